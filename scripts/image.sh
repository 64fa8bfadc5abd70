#!/usr/bin/env bash
# Builds jobnet's OCI image with podman, offline (FROM scratch, nothing
# pulled): builds the binaries, stages them with the shared libraries and
# dynamic loader that ldd reports for them, and builds ./Containerfile on that
# staging directory. Tags localhost/jobnet:<workspace version> and
# localhost/jobnet:latest. The `jobnet` plugin is built static-pie
# (build_static_plugin in scripts/lib/workspace.sh): it is installed into the
# host's /opt/cni/bin and runs against the host's glibc, not the image's.
#
#   scripts/image.sh                  # release binaries
#   scripts/image.sh --profile debug  # reuse the debug build (fast, large image)
#
# The versioned tag is the only line on stdout (everything else goes to
# stderr), so `tag=$(scripts/image.sh)` works. As root it installs what it
# needs (podman among it); honours CARGO_TARGET_DIR and podman's usual
# CONTAINERS_CONF / CONTAINERS_STORAGE_CONF.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/workspace.sh

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "image.sh: $*" >&2; exit 1; }

profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || die "--profile needs release or debug"; profile=$2; shift 2 ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) cargo_profile=release ;;
  debug) cargo_profile=dev ;;
  *) die "--profile must be release or debug, not '$profile'" ;;
esac

# The one version of the workspace: [workspace.package] version in Cargo.toml.
version=$(workspace_version)
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"
name=localhost/jobnet

if [ "$(id -u)" = 0 ]; then
  JOBNET_WITH_PODMAN=1 scripts/install-deps.sh >&2
fi
command -v podman >/dev/null || die "podman is not installed (run as root to install it)"
command -v ldd >/dev/null || die "ldd is not installed"
command -v readelf >/dev/null || die "readelf is not installed (binutils)"

cargo build --profile "$cargo_profile" -p jobnet-daemon --bin jobnetd --bin jobnetctl >&2
bin_dir="${CARGO_TARGET_DIR:-target}/$profile"
# The plugin is static-pie, under the target triple's directory; the function
# fails unless the binary really is static.
plugin=$(build_static_plugin "$cargo_profile") || die "the static plugin did not build"
bins=(jobnet jobnetd jobnetctl)
declare -A bin_path=([jobnet]=$plugin [jobnetd]=$bin_dir/jobnetd [jobnetctl]=$bin_dir/jobnetctl)

work=$(mktemp -d "${TMPDIR:-/tmp}/jobnet-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/usr/local/bin"
for b in "${bins[@]}"; do
  install -m 0755 "${bin_path[$b]}" "$rootfs/usr/local/bin/$b"
done

# Keep the host's top-level links (merged /usr: /lib -> usr/lib, ...), so a
# library is found both under the path ldd printed and under its real path,
# which is where libibverbs looks for its providers.
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then
    t=$(readlink "/$d")
    t=${t#/}
    mkdir -p "$rootfs/$t"
    ln -s "$t" "$rootfs/$d"
  fi
done

# Copies a file to the same path in the image, as a regular file: sonames are
# often symlinks to versioned files, and the image needs only the soname.
stage() {
  local p=$1
  [ -e "$rootfs$p" ] && return 0
  mkdir -p "$rootfs$(dirname "$p")"
  cp -L "$p" "$rootfs$p"
}

# The shared libraries (and the loader) of an ELF file, by the absolute paths
# the host's loader resolves; any "not found" stops the build.
libs_of() {
  local out
  out=$(ldd "$1" 2>&1) || {
    # "not a dynamic executable": nothing to add.
    grep -q 'not a dynamic executable' <<<"$out" && return 0
    die "ldd $1: $out"
  }
  if grep -q 'not found' <<<"$out"; then
    die "ldd $1: a library is missing: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

declare -A seen=()
add_libs() {
  local lib list
  # Not a pipe: die must end the script, not a subshell.
  list=$(libs_of "$1") || exit 1
  while read -r lib; do
    [ -n "$lib" ] || continue
    [ -z "${seen[$lib]:-}" ] || continue
    seen[$lib]=1
    stage "$lib"
  done <<<"$list"
}

verbs=""
for b in "${bins[@]}"; do
  # A static binary (the plugin) links no library and needs no loader; ldd
  # says "statically linked" or, for a non-PIE one, fails.
  plugin_is_static "${bin_path[$b]}" && continue
  add_libs "${bin_path[$b]}"
  v=$(ldd "${bin_path[$b]}" | awk '$1 ~ /^libibverbs\.so/ && $3 ~ /^\// { print $3 }')
  if [ -n "$v" ]; then verbs=$v; fi
done

# libibverbs loads its device drivers with dlopen, which ldd cannot see:
# without them `jobnetctl rdma` in the pod would find no live ports on real
# NICs. They live in libibverbs/ beside the library, named by
# /etc/libibverbs.d/*.driver.
if [ -n "$verbs" ]; then
  providers="$(realpath "$(dirname "$verbs")")/libibverbs"
  if [ -d "$providers" ]; then
    for f in "$providers"/*.so; do
      [ -e "$f" ] || continue
      stage "$f"
      add_libs "$f"
    done
  else
    echo "image.sh: warning: no libibverbs providers in $providers" >&2
  fi
  for f in /etc/libibverbs.d/*.driver; do
    [ -e "$f" ] || continue
    stage "$f"
  done
fi

echo "image.sh: staged $(find "$rootfs" -type f | wc -l) files, $(du -sh "$rootfs" | cut -f1)" >&2
podman build --pull=never --layers=false --file Containerfile --build-arg "VERSION=$version" \
  --tag "$name:$version" --tag "$name:latest" "$work" >&2
echo "$name:$version"
