#!/usr/bin/env bash
# The whole jobnet test suite: installs what it needs, checks formatting and
# lints, runs every unit and network-namespace integration test, then the
# end-to-end run under a real container runtime (podman).
#
# Needs root (network namespaces, netlink). Set JOBNET_SKIP_E2E=1 to skip podman.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root: the tests create network namespaces" >&2
  exit 1
fi

JOBNET_WITH_PODMAN=1 scripts/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test (unit + netns integration)"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/jobnet-cargo-test.log
cargo_rc=${PIPESTATUS[0]}
[ "$cargo_rc" = 0 ] || { echo "cargo test failed" >&2; exit "$cargo_rc"; }

if [ "${JOBNET_SKIP_E2E:-0}" != 1 ] && [ -x scripts/e2e-podman.sh ]; then
  step "end to end under podman"
  scripts/e2e-podman.sh
fi

# One closing line for the whole run.
passed=$(grep -Eo '[0-9]+ passed' /tmp/jobnet-cargo-test.log | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/jobnet-cargo-test.log | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
