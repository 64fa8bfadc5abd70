#!/usr/bin/env bash
# End to end under a real container runtime: rootful podman (CNI backend)
# runs busybox containers whose network comes from a conflist with
# "type": "jobnet" on a one-node simulated fabric in the host netns.
#
# Checks: each container sees its VF as eth0 with its address and MTU; two
# containers ping each other over the fabric; after `podman rm` every VF is
# back in the host under its original name and no cache or lock file is left.
# Installs what it needs; needs root. Everything it makes is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/podman.sh

[ "$(id -u)" = 0 ] || { echo "e2e-podman: run as root" >&2; exit 1; }
JOBNET_WITH_PODMAN=1 scripts/install-deps.sh
cargo build --quiet -p jobnet-cni --bin jobnet -p jobnet-tests --bin jobnet-fabric
TARGET="${CARGO_TARGET_DIR:-target}/debug"

work=$(mktemp -d /tmp/jobnet-e2e.XXXXXX)
tag="e2e$$"
fabric_id=""
pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }

podman_() {
  podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}

cleanup() {
  set +e
  for c in "${tag}-0" "${tag}-1"; do podman_ rm -f -t 0 "$c" >/dev/null 2>&1; done
  [ -n "$fabric_id" ] && "$TARGET/jobnet-fabric" down "$fabric_id" >/dev/null
  rm -rf "$work" 2>/dev/null || { umount -R "$work/storage" 2>/dev/null; rm -rf "$work"; }
}
trap cleanup EXIT

# One node in the host netns, one NIC with four VFs.
"$TARGET/jobnet-fabric" up --host --nodes 1 --nics 1 --vfs 4 --json >"$work/fabric.json"
fabric_id=$(jq -r .id "$work/fabric.json")
# Given in the conflist, not the environment: podman may run DEL from its
# cleanup process, which does not carry this script's environment.
JOBNET_SYSFS_ROOT=$(jq -r '.nodes[0].sysfs_root' "$work/fabric.json")
JOBNET_STATE_DIR="$work/state"

# What rootful podman needs on this kind of host (see README, "podman").
mkdir -p "$work/net.d" "$work/cni-bin" "$work/rootfs/bin"
podman_host_conf >"$work/containers.conf"
cat >>"$work/containers.conf" <<CONF
[network]
network_backend = "cni"
cni_plugin_dirs = ["$work/cni-bin", "/usr/lib/cni"]
network_config_dir = "$work/net.d"
CONF
export CONTAINERS_CONF="$work/containers.conf"
ln -s "$(realpath "$TARGET/jobnet")" "$work/cni-bin/jobnet"

# A busybox image without a registry.
cp /bin/busybox "$work/rootfs/bin/busybox"
tar -C "$work/rootfs" -c . | podman_ import - "localhost/${tag}-busybox" >/dev/null

declare -a pcis netdevs addrs
for i in 0 1; do
  pcis[$i]=$(jq -r ".vfs[$i].pci" "$work/fabric.json")
  netdevs[$i]=$(jq -r ".vfs[$i].netdev" "$work/fabric.json")
  addrs[$i]="192.0.2.$((10 + i))"
  cat >"$work/net.d/${tag}-vf$i.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "${tag}-vf$i",
  "plugins": [
    {
      "type": "jobnet",
      "deviceID": "${pcis[$i]}",
      "mtu": 1400,
      "sysfsRoot": "$JOBNET_SYSFS_ROOT",
      "stateDir": "$JOBNET_STATE_DIR",
      "logFile": "$work/jobnet.log",
      "logLevel": "debug",
      "ipam": { "type": "static", "addresses": [ { "address": "${addrs[$i]}/24" } ] }
    }
  ]
}
JSON
done

for i in 0 1; do
  if podman_ run -d --name "${tag}-$i" --network "${tag}-vf$i" --cap-add NET_RAW \
      "localhost/${tag}-busybox" /bin/busybox sleep 600 >/dev/null; then
    ok "container $i started on VF ${pcis[$i]}"
  else
    not_ok "container $i did not start"
    tail -20 "$work/jobnet.log" 2>/dev/null || true
    exit 1
  fi
done

for i in 0 1; do
  ifaces=$(podman_ exec "${tag}-$i" /bin/busybox ip -o addr show)
  dev=$(awk -v a="${addrs[$i]}/24" '$0 ~ a {print $2}' <<<"$ifaces")
  if [ -n "$dev" ]; then
    ok "container $i has ${addrs[$i]}/24 on $dev"
  else
    not_ok "container $i lacks ${addrs[$i]}: $ifaces"
  fi
  mtu=$(podman_ exec "${tag}-$i" /bin/busybox cat "/sys/class/net/${dev:-eth0}/mtu" 2>/dev/null || true)
  [ "$mtu" = 1400 ] && ok "container $i interface MTU 1400" || not_ok "container $i MTU is '$mtu'"
  if ip link show "${netdevs[$i]}" >/dev/null 2>&1; then
    not_ok "VF netdev ${netdevs[$i]} still in the host while attached"
  else
    ok "VF netdev ${netdevs[$i]} left the host"
  fi
done

if podman_ exec "${tag}-0" /bin/busybox ping -c 2 -W 2 "${addrs[1]}" >/dev/null; then
  ok "container 0 pings container 1 over the fabric"
else
  not_ok "container 0 cannot ping container 1"
fi

for i in 0 1; do podman_ rm -f -t 0 "${tag}-$i" >/dev/null; done
for i in 0 1; do
  if ip link show "${netdevs[$i]}" >/dev/null 2>&1; then
    ok "VF ${pcis[$i]} back in the host as ${netdevs[$i]}"
  else
    not_ok "VF ${pcis[$i]} is not back as ${netdevs[$i]}"
  fi
done
left=$(find "$JOBNET_STATE_DIR" -type f 2>/dev/null | wc -l)
[ "$left" = 0 ] && ok "no cache or lock file left" || not_ok "$left state files left: $(find "$JOBNET_STATE_DIR" -type f)"

echo "e2e-podman: ${pass} passed, ${fail} failed"
[ "$fail" = 0 ]
