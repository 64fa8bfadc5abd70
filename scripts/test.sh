#!/usr/bin/env bash
# The whole jobnet test suite: installs what it needs, checks formatting and
# lints, runs every unit and network-namespace integration test, then the
# script-level checks: the demo tour, podman end to end, the OCI image under
# podman and the Kubernetes manifests against the API schemas.
#
# Ends with one line `N passed, N failed, N skipped` and exits non-zero when
# anything failed. A check that cannot run here (exit 77, or a Rust test that
# reports through JOBNET_SKIP_LOG, see docs/testing.md) counts as skipped.
#
# Needs root (network namespaces, netlink). Environment:
#   JOBNET_SKIP_E2E=1   skip the podman end to end and the image check
#   CARGO_TARGET_DIR    where to build (default: target/)
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root: the tests create network namespaces" >&2
  exit 1
fi

JOBNET_WITH_PODMAN=1 scripts/install-deps.sh || { echo "test.sh: installing packages failed" >&2; exit 1; }

logs=$(mktemp -d /tmp/jobnet-test.XXXXXX)
export JOBNET_SKIP_LOG="$logs/skipped.tsv"
: >"$JOBNET_SKIP_LOG"
passed=0 failed=0 skipped=0
failures=()

step() { printf '\n==> %s\n' "$*"; }

# check NAME CMD...: runs one script-level check; exit 0 pass, 77 skip, else fail.
check() {
  local name=$1; shift
  step "$name"
  "$@"
  local rc=$?
  case $rc in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)); echo "SKIP $name" ;;
    *) failed=$((failed + 1)); failures+=("$name (exit $rc)") ;;
  esac
}

check "cargo fmt --check" cargo fmt --all -- --check
check "cargo clippy (all targets, warnings are errors)" \
  cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

step "cargo test (unit + netns integration)"
cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$logs/cargo-test.log"
cargo_rc=${PIPESTATUS[0]}
# libtest prints one "test result:" line per test binary.
read -r t_pass t_fail < <(grep -E '^test result:' "$logs/cargo-test.log" |
  awk '{p+=$4; f+=$6} END {print p+0, f+0}')
t_skip=$(grep -c . "$JOBNET_SKIP_LOG" || true)
passed=$((passed + t_pass - t_skip))
# Ignored tests are helpers run by other tests and bench printers run by
# scripts/bench.sh and the demo: not part of the count.
skipped=$((skipped + t_skip))
failed=$((failed + t_fail))
if [ "$t_fail" -gt 0 ]; then
  while read -r name; do failures+=("$name"); done < <(grep -E '^test .* FAILED$' "$logs/cargo-test.log" | awk '{print $2}')
fi
if [ "$cargo_rc" != 0 ] && [ "$t_fail" = 0 ]; then
  # A build error or a crashed test binary: no "FAILED" line to count.
  failed=$((failed + 1)); failures+=("cargo test (exit $cargo_rc, see $logs/cargo-test.log)")
fi
if [ "$t_skip" -gt 0 ]; then
  echo "skipped Rust tests:"; sed 's/^/  /' "$JOBNET_SKIP_LOG"
fi

check "demo tour (scripts/demo.sh --ci)" scripts/demo.sh --ci
if [ "${JOBNET_SKIP_E2E:-0}" = 1 ]; then
  echo "SKIP podman end to end and image (JOBNET_SKIP_E2E=1)"
  skipped=$((skipped + 2))
else
  check "end to end under podman" scripts/e2e-podman.sh
  [ -x scripts/check-image.sh ] && check "OCI image under podman" scripts/check-image.sh --profile debug
fi
[ -x scripts/validate-manifests.sh ] && check "deploy/ manifests against the API schemas" scripts/validate-manifests.sh

echo
if [ "${#failures[@]}" -gt 0 ]; then
  echo "failed:"; printf '  %s\n' "${failures[@]}"
fi
echo "logs: $logs"
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" = 0 ]
