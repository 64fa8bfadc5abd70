#!/usr/bin/env bash
# jobnet in a few minutes: builds, brings up a simulated RDMA fabric (nodes
# are network namespaces, NICs are veth PFs with veth VFs, sysfs is a fake
# tree), starts jobnetd on every node, launches a small job whose ranks get
# the job network the way a container runtime would attach them, shows
# addresses, rails and topology, proves rank-to-rank reachability, and tears
# it all down. Needs root; installs what it needs.
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
pods=()
daemons=()
cleanup() {
  set +e
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
  [ -n "$fabric_id" ] && "$T/jobnet-fabric" down "$fabric_id" >/dev/null && echo "fabric $fabric_id removed"
  rm -rf "$work"
}
trap cleanup EXIT

say "the plugin speaks CNI 0.3.0 to 1.1.0; a bad config is an error with the right code"
echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$JOBNET" | jq -c .
echo '{"cniVersion":"1.1.0","name":"demo","type":"jobnet","vlan":5000}' |
  CNI_COMMAND=ADD CNI_CONTAINERID=demo CNI_NETNS=/proc/self/ns/net CNI_IFNAME=net1 \
  "$JOBNET" 2>/dev/null | jq -c . || true

say "simulated fabric: 2 nodes x 2 NICs (rails) x 4 VFs, switchdev eswitches, RDMA devices in sysfs"
"$T/jobnet-fabric" up --nodes 2 --nics 2 --vfs 4 --rdma --switchdev --json >"$work/fabric.json"
fabric_id=$(jq -r .id "$work/fabric.json")
jq -r '.vfs[] | select(.id.index < 2) | "node\(.id.node) rail\(.id.nic) VF \(.pci)  netdev \(.netdev)  rdma \(.rdma_device)"' "$work/fabric.json"

node_ns() { jq -r ".nodes[$1].netns" "$work/fabric.json"; }
node_sys() { jq -r ".nodes[$1].sysfs_root" "$work/fabric.json"; }

say "jobnetd on each node (pool 198.18.0.0/16: a /24 and a VXLAN ID per job, rank-ordered addresses)"
for n in 0 1; do
  mkdir -p "$work/node$n"
  cat >"$work/node$n/jobnetd.toml" <<TOML
node = "node$n"
socket = "$work/node$n/jobnetd.sock"
state_dir = "$work/node$n/state"
run_dir = "$work/node$n/run"
sysfs_root = "$(node_sys $n)"
metrics_addr = "off"
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
gateway = "none"
isolation = { mode = "vxlan", first = 1000, last = 1999 }
pfs = ["$(jq -r ".nodes[$n].pfs[0].netdev" "$work/fabric.json")"]
TOML
  ip netns exec "$(node_ns $n)" "$T/jobnetd" --config "$work/node$n/jobnetd.toml" \
    >"$work/node$n/jobnetd.log" 2>&1 &
  daemons+=($!)
done
for n in 0 1; do
  for _ in $(seq 50); do [ -S "$work/node$n/jobnetd.sock" ] && break; sleep 0.1; done
  ip netns exec "$(node_ns $n)" "$T/jobnetctl" --socket "$work/node$n/jobnetd.sock" status | head -1
done

# Runs the plugin on node $1 like a runtime would: in the node's netns.
cni() {
  local node=$1 cmd=$2 cid=$3 pod=$4 conf=$5
  printf '%s' "$conf" | ip netns exec "$(node_ns "$node")" env JOBNET_SYSFS_ROOT="$(node_sys "$node")" \
    JOBNET_STATE_DIR="$work/node$node/cni" CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
    CNI_NETNS="/run/netns/$pod" CNI_IFNAME=net1 "$JOBNET"
}
ctl() { local n=$1; shift; ip netns exec "$(node_ns "$n")" "$T/jobnetctl" --socket "$work/node$n/jobnetd.sock" "$@"; }
conf_for() { # job rank node
  cat <<JSON
{"cniVersion":"1.1.0","name":"rdma-net","type":"jobnet","mtu":9000,
 "daemonSocket":"$work/node$3/jobnetd.sock","logFile":"$work/jobnet.log",
 "args":{"cni":{"job":"$1","rank":$2}},
 "runtimeConfig":{"CNIDeviceInfoFile":"$work/devinfo-$1-$2.json"}}
JSON
}

say "job 'llama': rank 0 on node 0, rank 1 on node 1 (no ipam section: jobnetd assigns)"
for rank in 0 1; do
  pod="demo$$-llama-$rank"; ip netns add "$pod"; pods+=("$pod")
  echo "-- ADD llama rank $rank on node $rank -> CNI result:"
  cni "$rank" ADD "llama-$rank" "$pod" "$(conf_for llama $rank $rank)" | jq -c '{interfaces, ips}'
  echo "-- device-info for Multus: $(jq -c .pci "$work/devinfo-llama-$rank.json")"
  echo "-- in the pod: $(ip -n "$pod" -br addr show net1)"
done
say "jobnetctl job show llama (node 0) and an MPI hostfile for the job"
ctl 0 job show llama
for n in 0 1; do ctl "$n" job hostfile llama; done

say "rank 0 reaches rank 1 across the fabric"
addr1=$(ip -n "demo$$-llama-1" -j addr show net1 | jq -r '.[0].addr_info[] | select(.family=="inet") | .local')
ip netns exec "demo$$-llama-0" ping -c 3 -i 0.2 "$addr1" | tail -2

say "CHECK: what ADD did is still true"
prev=$(cni 0 ADD llama-0 "demo$$-llama-0" "$(conf_for llama 0 0)")
cni 0 CHECK llama-0 "demo$$-llama-0" "$(conf_for llama 0 0 | jq -c --argjson p "$prev" '. + {prevResult: $p}')" &&
  echo "CHECK passed (and the repeated ADD returned the same result)"

say "a second job 'gpt', also on both nodes, gets its own subnet and VXLAN ID"
for rank in 0 1; do
  pod="demo$$-gpt-$rank"; ip netns add "$pod"; pods+=("$pod")
  cni "$rank" ADD "gpt-$rank" "$pod" "$(conf_for gpt $rank $rank)" | jq -c '.ips'
done
ctl 0 jobs
gaddr1=$(ip -n "demo$$-gpt-1" -j addr show net1 | jq -r '.[0].addr_info[] | select(.family=="inet") | .local')
echo "-- gpt rank 0 reaches gpt rank 1 ($gaddr1):"
ip netns exec "demo$$-gpt-0" ping -c 2 -i 0.2 "$gaddr1" | tail -2
echo "-- gpt rank 0 takes an address in llama's subnet and tries llama rank 1 ($addr1):"
ip -n "demo$$-gpt-0" addr add 198.18.0.99/24 dev net1
if ip netns exec "demo$$-gpt-0" ping -c 2 -W 1 "$addr1" >/dev/null 2>&1; then
  echo "REACHED: isolation is broken"; exit 1
else
  echo "no reply: the jobs are isolated"
fi
ip -n "demo$$-gpt-0" addr del 198.18.0.99/24 dev net1
echo "-- per-job bridges and VXLAN devices on node 0:"
ip -n "$(node_ns 0)" -br link show type bridge
ip -n "$(node_ns 0)" -d link show type vxlan | grep -o 'jnx[0-9]*\|vxlan id [0-9]*' | paste - -

say "DEL: every VF goes back to its node exactly as it was"
for rank in 0 1; do
  cni "$rank" DEL "gpt-$rank" "demo$$-gpt-$rank" "$(conf_for gpt $rank $rank)"
  cni "$rank" DEL "llama-$rank" "demo$$-llama-$rank" "$(conf_for llama $rank $rank)"
done
for n in 0 1; do
  netdev=$(jq -r ".vfs[] | select(.id.node == $n and .id.nic == 0 and .id.index == 0) | .netdev" "$work/fabric.json")
  ip -n "$(node_ns $n)" -br link show "$netdev"
done
ctl 0 attachments
echo "job bridges left on node 0: $(ip -n "$(node_ns 0)" -br link show type bridge | wc -l)"
echo "plugin state files left: $(find "$work"/node*/cni -type f 2>/dev/null | wc -l)"

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
