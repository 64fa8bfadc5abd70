#!/usr/bin/env bash
# jobnet in a few minutes: builds, brings up a simulated RDMA fabric (nodes
# are network namespaces, NICs are veth PFs with veth VFs, sysfs is a fake
# tree) with a real 3-member etcd on its management network, starts jobnetd
# on every node, launches two jobs whose ranks get the job network the way a
# container runtime would attach them (in opposite orders on different
# nodes), shows addresses, rails and topology, proves rank-to-rank
# reachability across nodes on every rail and isolation from the other job,
# waits for a job's ranks and checks its network end to end (job wait, job
# preflight), and tears it all down. Needs root; installs what it needs.
#
# --ci: plain headings (no terminal escapes), for logs; the tour is the same
# and any failed step fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=0
for arg in "$@"; do
  case $arg in
    --ci) ci=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
if [ "$ci" = 1 ]; then
  say() { printf '\n== %s\n' "$*"; }
else
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fi

say "build"
# Every binary this script runs, by name: `--bin` selects binaries across all
# the packages given, so a package without a named binary builds nothing.
cargo build --quiet -p jobnet-cni -p jobnet-daemon -p jobnet-tests \
  --bin jobnet --bin jobnetd --bin jobnetctl --bin jobnet-fabric --bin jobnet-layout
T="${CARGO_TARGET_DIR:-target}/debug"
JOBNET="$(realpath "$T/jobnet")"

work=$(mktemp -d /tmp/jobnet-demo.XXXXXX)
fabric_id=""
etcd_dir=""
pods=()
daemons=()
cleanup() {
  set +e
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
  [ -n "$etcd_dir" ] && scripts/etcd-cluster.sh stop "$etcd_dir" >/dev/null && echo "etcd stopped"
  [ -n "$fabric_id" ] && "$T/jobnet-fabric" down "$fabric_id" >/dev/null && echo "fabric $fabric_id removed"
  rm -rf "$work"
}
trap cleanup EXIT

say "the plugin speaks CNI 0.3.0 to 1.1.0; a bad config is an error with the right code"
echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$JOBNET" | jq -c .
echo '{"cniVersion":"1.1.0","name":"demo","type":"jobnet","vlan":5000}' |
  CNI_COMMAND=ADD CNI_CONTAINERID=demo CNI_NETNS=/proc/self/ns/net CNI_IFNAME=net1 \
  "$JOBNET" 2>/dev/null | jq -c . || true

NODES=3
say "simulated fabric: $NODES nodes x 2 NICs (rails) x 4 VFs, switchdev eswitches, RDMA devices in sysfs, a management network"
"$T/jobnet-fabric" up --nodes "$NODES" --nics 2 --vfs 4 --rdma --switchdev --mgmt --json >"$work/fabric.json"
fabric_id=$(jq -r .id "$work/fabric.json")
jq -r '.vfs[] | select(.id.index == 0) | "node\(.id.node) rail\(.id.nic) VF \(.pci)  netdev \(.netdev)  rdma \(.rdma_device)"' "$work/fabric.json"

node_ns() { jq -r ".nodes[$1].netns" "$work/fabric.json"; }
node_sys() { jq -r ".nodes[$1].sysfs_root" "$work/fabric.json"; }
mgmt_ns=$(jq -r .mgmt.netns "$work/fabric.json")
mgmt_addr=$(jq -r .mgmt.address "$work/fabric.json")

say "a 3-member etcd cluster on the management network ($mgmt_addr), where every node's jobnetd keeps job identity"
etcd_dir="$work/etcd"
endpoints=$(scripts/etcd-cluster.sh start "$etcd_dir" --members 3 --host "$mgmt_addr" --netns "$mgmt_ns")
echo "endpoints: $endpoints"
toml_endpoints=$(echo "$endpoints" | tr ',' '\n' | sed 's/.*/"&"/' | paste -sd, -)

say "jobnetd on each node: pool 198.18.0.0/16, a /24 per job and rail, one VXLAN ID per job and rail, store = etcd"
for n in $(seq 0 $((NODES - 1))); do
  mkdir -p "$work/node$n"
  cat >"$work/node$n/jobnetd.toml" <<TOML
node = "node$n"
socket = "$work/node$n/jobnetd.sock"
state_dir = "$work/node$n/state"
run_dir = "$work/node$n/run"
sysfs_root = "$(node_sys "$n")"
metrics_addr = "off"
reconcile_interval_secs = 2
[store]
backend = "etcd"
endpoints = [$toml_endpoints]
prefix = "/jobnet-demo"
timeout_ms = 2000
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
gateway = "none"
rails = 2
isolation = { mode = "vxlan", first = 1000, last = 1999 }
pfs = ["$(jq -r ".nodes[$n].pfs[0].netdev" "$work/fabric.json")", "$(jq -r ".nodes[$n].pfs[1].netdev" "$work/fabric.json")"]
TOML
  ip netns exec "$(node_ns "$n")" "$T/jobnetd" --config "$work/node$n/jobnetd.toml" \
    >"$work/node$n/jobnetd.log" 2>&1 &
  daemons+=($!)
done
ctl() { local n=$1; shift; ip netns exec "$(node_ns "$n")" "$T/jobnetctl" --socket "$work/node$n/jobnetd.sock" "$@"; }
for n in $(seq 0 $((NODES - 1))); do
  for _ in $(seq 100); do ctl "$n" status >/dev/null 2>&1 && break; sleep 0.1; done
  ctl "$n" status | head -1
done
echo "-- jobnetctl nodes (any node sees all of them, with liveness):"
ctl 0 nodes

# Runs the plugin on node $1 like a runtime would: in the node's netns.
cni() {
  local node=$1 cmd=$2 cid=$3 pod=$4 conf=$5
  printf '%s' "$conf" | ip netns exec "$(node_ns "$node")" env JOBNET_SYSFS_ROOT="$(node_sys "$node")" \
    JOBNET_STATE_DIR="$work/node$node/cni" CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
    CNI_NETNS="/run/netns/$pod" CNI_IFNAME=net1 "$JOBNET"
}
# MTU 8950: the fabric's PFs (the VXLAN underlay) carry 9000, and VXLAN over
# IPv4 takes 50 of it; jobnetd raises each representor to the tunnel's MTU.
conf_for() { # job rank node
  cat <<JSON
{"cniVersion":"1.1.0","name":"rdma-net","type":"jobnet","mtu":8950,"rails":"all",
 "daemonSocket":"$work/node$3/jobnetd.sock","logFile":"$work/jobnet.log",
 "args":{"cni":{"job":"$1","rank":$2}},
 "runtimeConfig":{"CNIDeviceInfoFile":"$work/devinfo-$1-$2.json"}}
JSON
}
pod_of() { echo "demo$$-$1-$2"; }
addr_of() { # job rank ifname
  ip -n "$(pod_of "$1" "$2")" -j addr show "$3" | jq -r '.[0].addr_info[] | select(.family=="inet") | .local'
}

say "two jobs, one rank per node, attached in opposite orders (node 0: llama then gpt; node 1: gpt then llama; ...), all rails"
for n in $(seq 0 $((NODES - 1))); do
  if [ $((n % 2)) = 0 ]; then order="llama gpt"; else order="gpt llama"; fi
  for job in $order; do
    pod=$(pod_of "$job" "$n"); ip netns add "$pod"; pods+=("$pod")
    printf 'node%s  %-5s rank %s -> ' "$n" "$job" "$n"
    cni "$n" ADD "$job-$n" "$pod" "$(conf_for "$job" "$n" "$n")" |
      jq -c '[.interfaces[] | select(.sandbox) | .name] as $i | {interfaces: $i, ips: [.ips[].address]}'
  done
done
echo "-- device-info for Multus (llama rank 0): $(jq -c .pci "$work/devinfo-llama-0.json")"
echo "-- in llama rank 0: $(ip -n "$(pod_of llama 0)" -br addr show | grep net1 | tr -s ' ' | paste -sd'|' -)"

say "every node agrees on each job's subnets and VXLAN IDs, whatever the order it saw them in"
for n in $(seq 0 $((NODES - 1))); do
  echo "node$n: $(ctl "$n" jobs --json | jq -c '[.[] | {job, vni: [.subnets[] | .isolationId], subnets: [.subnets[].subnet]}] | sort_by(.job)')"
done
agree=$(for n in $(seq 0 $((NODES - 1))); do ctl "$n" jobs --json | jq -c '[.[] | {job, subnets}] | sort_by(.job)'; done | sort -u | wc -l)
[ "$agree" = 1 ] || { echo "nodes disagree on job identity"; exit 1; }

say "jobnetctl job show llama (asked on node 2: every rank, cluster-wide) and an MPI hostfile per rail"
ctl 2 job show llama
echo "-- hostfile, rail 0 (node 1) and rail 1 (node 0):"
ctl 1 job hostfile llama --rail 0
ctl 0 job hostfile llama --rail 1

say "rank-to-rank reachability across nodes, on every rail"
for job in llama gpt; do
  for rail_if in net1 net1r1; do
    for r in $(seq 1 $((NODES - 1))); do
      a=$(addr_of "$job" "$r" "$rail_if")
      ip netns exec "$(pod_of "$job" 0)" ping -c 2 -i 0.2 -W 2 "$a" >/dev/null ||
        { echo "$job rank 0 CANNOT reach rank $r on $rail_if ($a)"; exit 1; }
      echo "$job rank 0 -> rank $r ($rail_if $a): reachable"
    done
  done
done

say "isolation: gpt rank 0 takes an address in llama's subnet and tries llama rank 1"
l1=$(addr_of llama 1 net1)
squat="${l1%.*}.250"
ip -n "$(pod_of gpt 0)" addr add "$squat/24" dev net1
if ip netns exec "$(pod_of gpt 0)" ping -c 2 -W 1 "$l1" >/dev/null 2>&1; then
  echo "REACHED $l1 from gpt rank 0: isolation is broken"; exit 1
else
  echo "gpt rank 0 as $squat -> llama rank 1 ($l1): no reply, the jobs are isolated"
fi
ip -n "$(pod_of gpt 0)" addr del "$squat/24" dev net1
echo "-- per-job, per-rail bridges and VXLAN devices on node 0:"
ip -n "$(node_ns 0)" -d link show type vxlan | grep -o 'jnx[0-9]*\|vxlan id [0-9]*\|dev [a-z0-9]*' | paste - - - | sed 's/^/   /'

say "CHECK: what ADD did is still true (and a repeated ADD answers the same)"
prev=$(cni 0 ADD llama-0 "$(pod_of llama 0)" "$(conf_for llama 0 0)")
cni 0 CHECK llama-0 "$(pod_of llama 0)" "$(conf_for llama 0 0 | jq -c --argjson p "$prev" '. + {prevResult: $p}')" &&
  echo "CHECK passed"

say "a rank is held once, cluster-wide: llama rank 1 asked for on node 0 is a conflict"
pod=$(pod_of llama 1x); ip netns add "$pod"; pods+=("$pod")
if out=$(cni 0 ADD llama-1x "$pod" "$(conf_for llama 1 0)"); then
  echo "rank 1 was given twice"; exit 1
else
  echo "$out" | jq -c '{code, msg}'
fi

say "job readiness: wait until every rank is attached, then check the job's network from inside its pods"
ctl 1 job wait llama --ranks "$NODES" --timeout 30s
echo "-- a rank that never comes: job wait names it at its deadline and exits 1"
if ctl 0 job wait llama --ranks $((NODES + 1)) --timeout 2s; then
  echo "job wait passed with a rank missing"; exit 1
fi
echo "-- preflight, asked on node 2: each node probes its ranks (link, reachability, MTU, duplicate address, isolation from gpt, round trips)"
ctl 2 job preflight llama
echo "-- llama rank 1's rail 0 interface drops to MTU 1400 (a misconfigured pod): preflight names it"
ip -n "$(pod_of llama 1)" link set net1 mtu 1400
if ctl 0 job preflight llama >"$work/preflight.txt"; then
  cat "$work/preflight.txt"; echo "preflight missed the MTU mismatch"; exit 1
fi
grep -E '^rail [0-9]+: rank' "$work/preflight.txt" | head -n 4
if grep -E '^rail [0-9]+: rank' "$work/preflight.txt" | grep -qv ': mtu: '; then
  echo "preflight failed on more than the MTU:"; cat "$work/preflight.txt"; exit 1
fi
echo "-- MTU put back to 8950: preflight passes again"
ip -n "$(pod_of llama 1)" link set net1 mtu 8950
ctl 0 job preflight llama >"$work/preflight.txt"
head -n 1 "$work/preflight.txt"

say "DEL: every VF goes back to its node exactly as it was, the jobs leave the nodes"
for n in $(seq 0 $((NODES - 1))); do
  for job in llama gpt; do
    cni "$n" DEL "$job-$n" "$(pod_of "$job" "$n")" "$(conf_for "$job" "$n" "$n")"
  done
done
for n in $(seq 0 $((NODES - 1))); do
  netdev=$(jq -r ".vfs[] | select(.id.node == $n and .id.nic == 0 and .id.index == 0) | .netdev" "$work/fabric.json")
  ip -n "$(node_ns "$n")" -br link show "$netdev"
done
ctl 0 attachments
left=0
for n in $(seq 0 $((NODES - 1))); do
  left=$((left + $(ip -n "$(node_ns "$n")" -br link show type bridge | wc -l)))
done
echo "job bridges left on the nodes: $left"
echo "plugin state files left: $(find "$work"/node*/cni -type f 2>/dev/null | wc -l)"
[ "$left" = 0 ] || { echo "bridges leaked"; exit 1; }

say "topology: an 8-GPU, 8-NIC, 2-socket server (fake sysfs) under jobnetd"
"$T/jobnet-layout" "$work/gpu-server/sys" --layout 8x8 >/dev/null
cat >"$work/gpu-server/jobnetd.toml" <<TOML
node = "gpu-server"
socket = "$work/gpu-server/jobnetd.sock"
state_dir = "$work/gpu-server/state"
run_dir = "$work/gpu-server/run"
sysfs_root = "$work/gpu-server/sys"
metrics_addr = "off"
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
rails = 8
isolation = { mode = "none" }
TOML
"$T/jobnetd" --config "$work/gpu-server/jobnetd.toml" >"$work/gpu-server/jobnetd.log" 2>&1 &
daemons+=($!)
for _ in $(seq 50); do [ -S "$work/gpu-server/jobnetd.sock" ] && break; sleep 0.1; done
gctl() { "$T/jobnetctl" --socket "$work/gpu-server/jobnetd.sock" "$@"; }
gctl topo
echo
echo "-- ranks 0..3 of job 'llama' with GPUs 0, 3, 5, 6 (through the API, as the plugin asks):"
for rank in 0 1 2 3; do
  gpu=$(echo "0 3 5 6" | cut -d' ' -f$((rank + 1)))
  curl -s --unix-socket "$work/gpu-server/jobnetd.sock" -X POST http://jobnetd/v1/attachments/reserve \
    -d "{\"containerID\":\"pod$rank\",\"ifname\":\"net1\",\"netns\":\"/proc/1/ns/net\",\"job\":\"llama\",\"rank\":$rank,\"gpus\":[\"$gpu\"]}" |
    jq -r "\"rank $rank GPU$gpu -> rail \(.vfs[0].rail) VF \(.vfs[0].pci) \(.addresses[0].address)\""
  curl -s --unix-socket "$work/gpu-server/jobnetd.sock" -X POST http://jobnetd/v1/attachments/commit \
    -d "{\"containerID\":\"pod$rank\",\"ifname\":\"net1\"}" >/dev/null
done
echo
echo "-- NCCL environment jobnetd wrote for rank 2:"
gctl job env llama --rank 2

say "tear down"
