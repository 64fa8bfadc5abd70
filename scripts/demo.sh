#!/usr/bin/env bash
# jobnet in five minutes: builds, brings up a simulated RDMA fabric (nodes
# are network namespaces, NICs are veth PFs with veth VFs, sysfs is a fake
# tree), attaches VFs to "pods" of a job the way a container runtime would,
# shows what the pods got, proves rank-to-rank reachability, and tears it
# all down. Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "build"
cargo build --quiet -p jobnet-cni --bin jobnet -p jobnet-tests --bin jobnet-fabric
T="${CARGO_TARGET_DIR:-target}/debug"
JOBNET="$(realpath "$T/jobnet")"

say "the plugin answers VERSION as a runtime asks it"
echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION "$JOBNET"

say "a bad config is a CNI error with the right code (7: invalid network config)"
set +e
echo '{"cniVersion":"1.1.0","name":"demo","type":"jobnet","deviceID":"0000:03:00.2","vlan":5000}' |
  CNI_COMMAND=ADD CNI_CONTAINERID=demo CNI_NETNS=/proc/self/ns/net CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni "$JOBNET"
echo "(exit code $?)"
set -e

work=$(mktemp -d /tmp/jobnet-demo.XXXXXX)
fabric_id=""
pods=()
cleanup() {
  set +e
  for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null; done
  [ -n "$fabric_id" ] && "$T/jobnet-fabric" down "$fabric_id" >/dev/null && echo "fabric $fabric_id removed"
  rm -rf "$work"
}
trap cleanup EXIT

say "simulated fabric: 2 nodes x 2 NICs (rails) x 4 VFs, with RDMA devices in sysfs"
"$T/jobnet-fabric" up --nodes 2 --nics 2 --vfs 4 --rdma --json >"$work/fabric.json"
fabric_id=$(jq -r .id "$work/fabric.json")
jq -r '.vfs[] | select(.id.index < 2) | "node\(.id.node) rail\(.id.nic) VF \(.pci) netdev \(.netdev) rdma \(.rdma_device)"' "$work/fabric.json"

# Runs the plugin on node $1 (in its netns, with its sysfs) like a runtime would.
cni() {
  local node=$1 cmd=$2 cid=$3 pod=$4 conf=$5
  local ns sys
  ns=$(jq -r ".nodes[$node].netns" "$work/fabric.json")
  sys=$(jq -r ".nodes[$node].sysfs_root" "$work/fabric.json")
  printf '%s' "$conf" | ip netns exec "$ns" env JOBNET_SYSFS_ROOT="$sys" \
    JOBNET_STATE_DIR="$work/state-node$node" CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" \
    CNI_NETNS="/run/netns/$pod" CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni "$JOBNET"
}

say "job 'llama' rank 0 on node 0 and rank 1 on node 1, both on rail 0"
for rank in 0 1; do
  pod="demo$$-llama-$rank"
  ip netns add "$pod"
  pods+=("$pod")
  pci=$(jq -r ".vfs[] | select(.id.node == $rank and .id.nic == 0 and .id.index == 0) | .pci" "$work/fabric.json")
  conf=$(cat <<JSON
{"cniVersion":"1.0.0","name":"llama-rail0","type":"jobnet","deviceID":"$pci","mtu":9000,
 "logFile":"$work/jobnet.log","logLevel":"info",
 "args":{"cni":{"job":"llama","rank":$rank}},
 "runtimeConfig":{"CNIDeviceInfoFile":"$work/devinfo-$rank.json"},
 "ipam":{"type":"static","addresses":[{"address":"192.0.2.$((10 + rank))/24"}]}}
JSON
)
  echo "$conf" >"$work/conf-$rank.json"
  echo "-- ADD rank $rank (VF $pci) -> result:"
  cni "$rank" ADD "llama-$rank" "$pod" "$conf" | jq -c '{interfaces, ips}'
  echo "-- device-info file for Multus:"
  jq -c . "$work/devinfo-$rank.json"
  echo "-- inside the pod:"
  ip -n "$pod" -br addr show net1
done

say "rank 0 reaches rank 1 across the fabric"
ip netns exec "demo$$-llama-0" ping -c 3 -i 0.2 192.0.2.11 | tail -2

say "CHECK: what ADD did is still true"
prev=$(cni 0 ADD llama-0 "demo$$-llama-0" "$(cat "$work/conf-0.json")")
conf=$(jq -c --argjson p "$prev" '. + {prevResult: $p}' "$work/conf-0.json")
cni 0 CHECK llama-0 "demo$$-llama-0" "$conf" && echo "CHECK passed"

say "DEL: VFs go back to their nodes exactly as they were"
for rank in 0 1; do
  cni "$rank" DEL "llama-$rank" "demo$$-llama-$rank" "$(cat "$work/conf-$rank.json")"
  ns=$(jq -r ".nodes[$rank].netns" "$work/fabric.json")
  netdev=$(jq -r ".vfs[] | select(.id.node == $rank and .id.nic == 0 and .id.index == 0) | .netdev" "$work/fabric.json")
  ip -n "$ns" -br link show "$netdev"
done
echo "state files left: $(find "$work"/state-node* -type f | wc -l)"

say "what the plugin logged (logFile)"
tail -n 4 "$work/jobnet.log"

say "tear down"
