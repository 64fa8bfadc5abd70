#!/usr/bin/env bash
# Installs the Debian packages jobnet's build, tests, demo and benchmarks need.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  # kernel tooling used by tests, the simulated fabric and byte comparisons
  iproute2 strace procps iputils-ping
  # readelf, to check that the plugin is built statically linked
  binutils
  # reference CNI plugins (chaining tests, benchmark baseline)
  containernetworking-plugins
  # RDMA uapi headers and libibverbs for the daemon's live port data
  linux-libc-dev libibverbs-dev cmake pkg-config libnl-3-dev libnl-route-3-dev libclang-dev
  # JSON on the command line for scripts
  jq curl
  # etcd for the cluster store's tests, demo and benchmarks; protoc for the
  # etcd client's build; openssl for the TLS test certificates
  etcd-server etcd-client protobuf-compiler libprotobuf-dev openssl
)
if [ "${JOBNET_WITH_PODMAN:-0}" = 1 ]; then
  PACKAGES+=(podman runc conmon catatonit busybox-static)
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
