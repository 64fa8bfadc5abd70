#!/usr/bin/env bash
# Benchmarks, each printing its figures next to the baseline it is compared
# with in the same run:
#   1. attach: ADD/DEL latency of jobnet vs Debian's host-device+static vs the
#      bare kernel work (ip -batch), the median of each plugin phase, and 64
#      parallel ADDs vs 64 moves in one ip -batch (jobnet-bench); ends with
#      each target, its figure, the baseline and whether it is met. The
#      plugin is the static-pie build that the image ships
#      (build_static_plugin in scripts/lib/workspace.sh).
#   2. ipam: durable reserve+commit throughput and latency with 1 and 64
#      clients, and memory with 10,000 jobs / 100,000 attachments.
#   3. jobnetd: reserve+commit through the API socket of a real jobnetd
#      process with 1 and 64 client processes, its startup with 1,000 and
#      100,000 committed attachments, and its RSS after loading 10,000 jobs /
#      100,000 attachments.
#   4. topology: over all 8 single-GPU pods of an 8-GPU/8-NIC server, the
#      share placed on a NIC behind the GPU's own PCIe switch (PIX), jobnet's
#      choice vs "first free VF" (what the SR-IOV device plugin does).
#   5. cluster: one job of 1,024 ranks x 8 rails brought up by 128 simulated
#      nodes (own etcd client each) on a 3-member etcd on loopback, vs the same
#      load behind one cluster-wide etcd lock (whereabouts' single lease);
#      medians of BENCH_RUNS (default 3) runs, each on a fresh etcd.
#   6. preflight: `jobnetctl job preflight` of one job of 64 ranks x 2 rails
#      on 4 simulated nodes (jobnetd per node netns, etcd in the mgmt netns):
#      8,064 directed pairs probed from inside the pods; median wall time of
#      3 runs, target <= 10 s.
# Needs root. Usage: scripts/bench.sh [attach|ipam|daemon|topology|cluster|preflight|all] (default all).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/workspace.sh
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh

what="${1:-all}"
TARGET="${CARGO_TARGET_DIR:-target}/release"

if [ "$what" = attach ] || [ "$what" = all ]; then
  cargo build --quiet --release -p jobnet-daemon --bin jobnetd -p jobnet-tests --bin jobnet-bench
  # The plugin as it ships: static-pie, under $CARGO_TARGET_DIR/<host triple>/.
  plugin=$(build_static_plugin release --quiet)
  echo "== attach latency (jobnet vs host-device+static vs ip -batch), per-phase medians, targets"
  # --timings: that many more cycles of each jobnet mode with
  # JOBNET_TIMINGS=1, apart from the timed ones; the target table at the
  # end puts each figure next to its baseline from this same run.
  "$TARGET/jobnet-bench" --jobnet "$plugin" --jobnetd "$TARGET/jobnetd" \
    --cycles "${BENCH_CYCLES:-100}" --parallel "${BENCH_PARALLEL:-64}" --timings "${BENCH_TIMINGS:-50}"
fi

if [ "$what" = ipam ] || [ "$what" = all ]; then
  echo "== IPAM: durable reserve+commit (redb, group commit)"
  cargo run --quiet --release -p jobnet-ipam --example ipam_bench -- --clients 1,64
  echo "== IPAM: memory with 10,000 jobs and 100,000 attachments"
  cargo run --quiet --release -p jobnet-ipam --example ipam_bench -- --clients 64 --fill-jobs 10000 --fill-attachments 100000
fi

if [ "$what" = daemon ] || [ "$what" = all ]; then
  cargo build --quiet --release -p jobnet-daemon --bin jobnetd --example api_bench --example rss_bench
  echo "== jobnetd: reserve+commit through the API, a jobnetd process and 1 / 64 client processes (target at 64: >= 5,000/s, p99 <= 20 ms; baseline: 1 client)"
  echo "== jobnetd: startup on a state dir with 1,000 / 100,000 committed attachments (target <= 1 s / <= 5 s until the API answers)"
  "$TARGET/examples/api_bench" --clients 1,64 --rounds 3 --startup 1000,100000
  echo "== jobnetd: RSS with 10,000 jobs and 100,000 attachments (target <= 64 MiB)"
  "$TARGET/examples/rss_bench" --jobs 10000 --attachments 100000
fi

if [ "$what" = topology ] || [ "$what" = all ]; then
  echo "== topology: single-GPU pods on a PIX NIC, jobnet vs first free VF"
  cargo run --quiet --release -p jobnet-daemon --example alignment -- --layout 8x8
  cargo run --quiet --release -p jobnet-daemon --example alignment -- --layout uneven
fi

if [ "$what" = cluster ] || [ "$what" = all ]; then
  cargo build --quiet --release -p jobnet-daemon --example cluster_bench
  echo "== cluster: 8,192 attachments over 128 nodes on a 3-member etcd vs one cluster-wide lock"
  # The bench kills its etcd members on every exit it controls; members left
  # by an abort are found by their data dir, private to this run.
  cluster_tmp=$(mktemp -d /tmp/jobnet-cluster-bench.XXXXXX)
  cluster_cleanup() {
    local pid
    for pid in $(pgrep -f -- "--data-dir=$cluster_tmp/" || true); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$cluster_tmp"
  }
  trap cluster_cleanup EXIT
  TMPDIR="$cluster_tmp" "$TARGET/examples/cluster_bench" --runs "${BENCH_RUNS:-3}" --probe-secs 3
  cluster_cleanup
  trap - EXIT
fi

if [ "$what" = preflight ] || [ "$what" = all ]; then
  echo "== preflight: 64 ranks x 2 rails on 4 nodes (target <= 10 s wall)"
  # The test builds the release plugin, jobnetd and jobnetctl it runs, and
  # puts the host's neighbour table limits back when it ends.
  preflight_log=$(mktemp)
  if cargo test --quiet --release -p jobnet-tests --test preflight bench_preflight_64x2_on_4_nodes \
    -- --ignored --nocapture >"$preflight_log" 2>&1; then
    grep -E '^(attached|preflight)' "$preflight_log"
    rm -f "$preflight_log"
  else
    cat "$preflight_log"; rm -f "$preflight_log"; exit 1
  fi
fi
