#!/usr/bin/env bash
# Builds jobnet's image (scripts/image.sh) and runs it under rootful podman:
#   - jobnetctl and jobnetd report the workspace version;
#   - jobnetd --check-config accepts a mounted config and prints it, rejects
#     a bad one, and accepts the jobnetd.toml that deploy/config.yaml ships;
#   - the entrypoint with --install-only replaces the plugin in a host
#     directory mounted at /host/opt/cni/bin (executable, byte-identical to
#     the image's copy, no temporary file left), and the installed plugin
#     answers CNI_COMMAND=VERSION; without the mount it fails;
#   - the image's plugin is statically linked (no program interpreter, no
#     shared library), so it runs on the host whatever its glibc;
#   - the default entrypoint installs the plugin, then jobnetd serves
#     `jobnetctl status` and stops cleanly on SIGTERM.
#
#   scripts/check-image.sh                  # release build
#   scripts/check-image.sh --profile debug  # reuse the debug build: faster
#
# Exit: 0 pass, 77 skip (podman cannot run containers here), other: fail.
# Uses its own podman storage, so the host's images are untouched; everything
# it makes is removed on exit. Needs root.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/lib/workspace.sh
. scripts/lib/podman.sh

SKIP=77
skip() { echo "check-image: SKIP: $*"; exit "$SKIP"; }
die() { echo "check-image: FAIL: $*" >&2; exit 1; }

profile=release
case "${1:-}" in
  "") ;;
  --profile) profile=${2:-} ;;
  --profile=*) profile=${1#--profile=} ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac
case "$profile" in
  release|debug) ;;
  *) die "--profile must be release or debug, not '$profile'" ;;
esac

[ "$(id -u)" = 0 ] || skip "needs root: the image runs under rootful podman"
if ! JOBNET_WITH_PODMAN=1 scripts/install-deps.sh; then
  command -v podman >/dev/null || skip "podman is not installed and could not be installed"
  echo "check-image: install-deps failed; going on with what is installed" >&2
fi
command -v podman >/dev/null || skip "podman is not installed"
command -v jq >/dev/null || die "jq is needed to read the plugin's VERSION answer"
command -v readelf >/dev/null || die "readelf (binutils) is needed to check the plugin is static"

version=$(workspace_version)
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"

work=$(mktemp -d /tmp/jobnet-check-image.XXXXXX)
ctr="jobnet-check-image-$$"
cleanup() {
  set +e
  podman rm -f -t 0 "$ctr" "$ctr-serve" "$ctr-copy" >/dev/null 2>&1
  podman rmi -f localhost/jobnet:latest "localhost/jobnet:$version" localhost/jobnet-check-probe \
    >/dev/null 2>&1
  rm -rf "$work" 2>/dev/null || { umount -R "$work/storage" 2>/dev/null; rm -rf "$work"; }
}
trap cleanup EXIT

# The storage is private to this run, so image.sh's tags land there too.
podman_host_conf >"$work/containers.conf"
cat >"$work/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$work/storage"
runroot = "$work/run"
CONF
export CONTAINERS_CONF="$work/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/storage.conf"

# Can this machine run a container at all? Asked with busybox before the
# (slow) build, so a host without a working runtime is a skip, not a failure
# of the image.
if ! podman info >"$work/info.log" 2>&1; then
  skip "podman info fails: $(tail -3 "$work/info.log")"
fi
# Only a static busybox runs alone in an empty root (ldd fails on it).
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
  mkdir -p "$work/probe/bin"
  cp /bin/busybox "$work/probe/bin/busybox"
  tar -C "$work/probe" -c . | podman import - localhost/jobnet-check-probe >/dev/null 2>"$work/probe.log" ||
    skip "podman cannot import an image: $(tail -3 "$work/probe.log")"
  podman run --rm --network none localhost/jobnet-check-probe /bin/busybox true >"$work/probe.log" 2>&1 ||
    skip "podman cannot run a container here: $(tail -3 "$work/probe.log")"
fi

echo "check-image: building the image" >&2
build_start=$SECONDS
tag=$(scripts/image.sh --profile "$profile") || die "scripts/image.sh failed"
echo "check-image: built $tag in $((SECONDS - build_start)) s" >&2

pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }
# judge STATUS OK_MESSAGE FAIL_MESSAGE
judge() { if [ "$1" = 0 ]; then ok "$2"; else not_ok "$3"; fi; }
run() { podman run --rm --name "$ctr" --network none "$@"; }

if [ "$tag" = "localhost/jobnet:$version" ]; then
  ok "image.sh tagged $tag"
else
  not_ok "image.sh printed '$tag', expected localhost/jobnet:$version"
fi
podman image exists localhost/jobnet:latest
judge $? "localhost/jobnet:latest exists" "localhost/jobnet:latest is missing"
entry=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$tag" 2>&1)
if [ "$entry" = '["/usr/local/bin/jobnetd","--install-cni","/host/opt/cni/bin"]' ]; then
  ok "entrypoint installs into /host/opt/cni/bin, then runs jobnetd"
else
  not_ok "unexpected entrypoint: $entry"
fi

for b in jobnetctl jobnetd; do
  out=$(run --entrypoint "/usr/local/bin/$b" "$tag" --version 2>&1)
  if [ "$out" = "$b $version" ]; then
    ok "$b --version: $out"
  else
    not_ok "$b --version printed '$out', expected '$b $version'"
  fi
done

cat >"$work/jobnetd.toml" <<'TOML'
node = "check-image-node"
metrics_addr = "off"

[[pools]]
name = "check-image-pool"
cidrs = ["10.250.0.0/16"]
rails = 2
TOML
out=$(run -v "$work/jobnetd.toml:/etc/jobnet/jobnetd.toml:ro" "$tag" --check-config 2>&1)
rc=$?
if [ "$rc" = 0 ] && grep -q '^node = "check-image-node"' <<<"$out" &&
   grep -q '^name = "check-image-pool"' <<<"$out"; then
  ok "jobnetd --check-config prints the mounted config"
else
  not_ok "jobnetd --check-config exited $rc: $out"
fi

printf 'no_such_key = 1\n' >"$work/bad.toml"
out=$(run -v "$work/bad.toml:/etc/jobnet/jobnetd.toml:ro" "$tag" --check-config 2>&1)
rc=$?
[ "$rc" = 2 ] && grep -q 'no_such_key' <<<"$out"
judge $? "jobnetd --check-config rejects an unknown key (exit 2)" "bad config: exit $rc, output: $out"

# kubectl reads a field of a manifest offline with --local.
if command -v kubectl >/dev/null; then
  if kubectl annotate --local -f deploy/config.yaml check-image=1 \
      -o jsonpath='{.data.jobnetd\.toml}' >"$work/deploy.toml" 2>"$work/kubectl.log" &&
     [ -s "$work/deploy.toml" ]; then
    out=$(run -v "$work/deploy.toml:/etc/jobnet/jobnetd.toml:ro" "$tag" --check-config 2>&1)
    rc=$?
    judge "$rc" "deploy/config.yaml's jobnetd.toml passes jobnetd --check-config" \
      "deploy/config.yaml's jobnetd.toml: exit $rc: $out"
  else
    not_ok "cannot read jobnetd.toml from deploy/config.yaml: $(cat "$work/kubectl.log")"
  fi
else
  echo "skip - kubectl absent: deploy/config.yaml's jobnetd.toml not checked"
fi

# An old plugin in place: the install must replace it, not add beside it.
mkdir -p "$work/cni-bin"
printf 'old plugin\n' >"$work/cni-bin/jobnet"
out=$(run -v "$work/cni-bin:/host/opt/cni/bin" "$tag" --install-only 2>&1)
rc=$?
plugin="$work/cni-bin/jobnet"
if [ "$rc" = 0 ] && [ -f "$plugin" ] && [ -x "$plugin" ]; then
  ok "--install-only installed an executable $(stat -c %a "$plugin") jobnet"
else
  not_ok "--install-only exited $rc ($out); plugin: $(ls -l "$plugin" 2>&1)"
fi
# Compared with the image's own copy, not target/: the shared target
# directory may have been rebuilt since.
podman create --name "$ctr-copy" "$tag" >/dev/null 2>&1 &&
  podman cp "$ctr-copy:/usr/local/bin/jobnet" "$work/image-jobnet" >/dev/null 2>&1
podman rm -f "$ctr-copy" >/dev/null 2>&1
cmp -s "$plugin" "$work/image-jobnet"
judge $? "installed plugin is byte-identical to the image's /usr/local/bin/jobnet" \
  "installed plugin differs from the image's /usr/local/bin/jobnet (or it could not be read)"
# The plugin runs on the host, against the host's glibc: it must need
# neither a loader nor a shared library (scripts/image.sh builds it
# static-pie).
if [ -f "$work/image-jobnet" ] && plugin_is_static "$work/image-jobnet"; then
  ok "the image's plugin is statically linked (no program interpreter, no shared library)"
else
  not_ok "the image's plugin is not statically linked: $(readelf -lW "$work/image-jobnet" 2>&1 |
    grep -i interpreter) $(readelf -dW "$work/image-jobnet" 2>&1 | grep NEEDED | tr -s ' \n' ' ')"
fi
entries=$(ls -A "$work/cni-bin")
if [ "$entries" = jobnet ]; then
  ok "no temporary file left in the CNI directory"
else
  not_ok "CNI directory holds: $(tr '\n' ' ' <<<"$entries")"
fi
answer=$(CNI_COMMAND=VERSION "$plugin" </dev/null 2>&1)
if jq -e '(.cniVersion | type == "string") and (.supportedVersions | index("1.0.0") != null)' \
    <<<"$answer" >/dev/null 2>&1; then
  ok "installed plugin answers VERSION: $(jq -c .supportedVersions <<<"$answer")"
else
  not_ok "installed plugin's VERSION answer: $answer"
fi

out=$(run "$tag" --install-only 2>&1)
rc=$?
[ "$rc" != 0 ] && grep -q 'CNI directory /host/opt/cni/bin' <<<"$out"
judge $? "without the host mount the install fails: $out" "install without a mount: exit $rc: $out"

# The entrypoint's whole path, as a plain `podman run` takes it: install,
# then serve the API, then stop cleanly on SIGTERM.
mkdir -p "$work/cni-bin-serve"
printf 'metrics_addr = "off"\n' >"$work/serve.toml"
if podman run -d --name "$ctr-serve" --network none -v "$work/cni-bin-serve:/host/opt/cni/bin" \
    -v "$work/serve.toml:/etc/jobnet/jobnetd.toml:ro" "$tag" >/dev/null 2>"$work/serve.log"; then
  up=1
  for _ in $(seq 1 40); do
    if podman exec "$ctr-serve" /usr/local/bin/jobnetctl status >"$work/status.out" 2>&1; then
      up=0
      break
    fi
    sleep 0.25
  done
  if [ "$up" = 0 ] && [ -x "$work/cni-bin-serve/jobnet" ]; then
    ok "default entrypoint installed the plugin and jobnetd answers jobnetctl status"
  else
    not_ok "default entrypoint: plugin dir: $(find "$work/cni-bin-serve" -mindepth 1 -printf "%M %f " 2>&1); status: $(cat "$work/status.out"); logs: $(podman logs "$ctr-serve" 2>&1 | tail -5)"
  fi
  podman stop -t 10 "$ctr-serve" >/dev/null 2>&1
  code=$(podman inspect --format '{{.State.ExitCode}}' "$ctr-serve" 2>&1)
  judge "$code" "SIGTERM stops jobnetd cleanly (exit 0)" \
    "jobnetd exited $code on SIGTERM: $(podman logs "$ctr-serve" 2>&1 | tail -5)"
  podman rm -f -t 0 "$ctr-serve" >/dev/null 2>&1
else
  not_ok "default entrypoint did not start: $(cat "$work/serve.log")"
fi

echo "check-image: ${pass} passed, ${fail} failed"
[ "$fail" = 0 ]
