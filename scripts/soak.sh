#!/usr/bin/env bash
# The long run of the fault suite (tests/tests/fault_suite.rs): a randomized
# stream of ADD / DEL / CHECK / GC plugin runs on one fabric node, with the
# plugin and jobnetd SIGKILLed at random moments, pod netns removed mid-ADD
# and before DEL, and state files truncated; then every leak count must be 0.
#
#   scripts/soak.sh [OPS] [SEED]
#
# OPS defaults to 1000 plugin runs (scripts/test.sh runs a short stream).
# SEED replays an earlier run's choices; without it the suite picks one and
# prints it first (`JOBNET_FAULT_SEED=...`). Builds in release mode. Prints
# the operations, faults, outcomes and leak counts at the end. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "soak.sh: run as root" >&2; exit 1; }

ops=${1:-1000}
if ! [[ $ops =~ ^[0-9]+$ ]] || ((10#$ops < 1)); then
    echo "usage: $0 [OPS] [SEED]" >&2
    exit 2
fi
export JOBNET_FAULT_OPS=$ops
if [ $# -ge 2 ]; then
    [[ $2 =~ ^[0-9]+$ ]] || { echo "soak.sh: SEED must be a number" >&2; exit 2; }
    export JOBNET_FAULT_SEED=$2
fi

scripts/install-deps.sh
cargo build --release -p jobnet-tests --test fault_suite
exec cargo test --release -p jobnet-tests --test fault_suite -- --nocapture --test-threads 1
