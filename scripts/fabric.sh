#!/usr/bin/env bash
# Simulated SR-IOV fabric for tests and demos (see tests/src/fabric/mod.rs).
#
#   scripts/fabric.sh up [--nodes N] [--nics M] [--vfs K] [--host] [--rdma] [--dpdk D] [--switchdev]
#                        [--gpus 8x8|uneven] [--mgmt] [--json]
#   scripts/fabric.sh down <id> | --all [--force]
#   scripts/fabric.sh status [<id>] [--json]
#
# `up` prints the fabric id, its namespaces and, per node, the sysfs root to
# export as JOBNET_SYSFS_ROOT. --switchdev puts representors in the node
# netns (unbridged) and an underlay address on every PF, for vxlan isolation.
# --gpus lays every node's sysfs out as that GPU server (GPUs, PCIe switches,
# NUMA nodes) with the fabric's NICs in its NIC slots (implies --rdma; --nics
# defaults to the server's NIC count: 8 for 8x8, 2 for uneven).
# --mgmt adds a management network: mgmt0 in every node (10.254.0.<node+1>/24)
# on a bridge in the netns jf<id>-mgmt, which holds 10.254.0.254; run services
# the nodes must reach there (scripts/etcd-cluster.sh start DIR --netns
# jf<id>-mgmt --host 10.254.0.254).
# `down --all` also removes what crashed test runs left behind (fabrics whose
# owning process is gone); --force takes fabrics of running tests too.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "fabric.sh: run as root: the fabric creates network namespaces" >&2
  exit 1
fi
case "${1:-}" in
  up|down|status) ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

cargo build --quiet -p jobnet-tests --bin jobnet-fabric
exec "${CARGO_TARGET_DIR:-target}/debug/jobnet-fabric" "$@"
