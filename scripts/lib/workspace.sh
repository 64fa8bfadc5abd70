# Sourced by the scripts that tag or check what the workspace builds, from
# the repository root.

# Prints the one version of the workspace ([workspace.package] version in
# Cargo.toml), or nothing when there is none.
workspace_version() {
  awk '
    /^\[/ { in_pkg = ($0 ~ /^\[workspace\.package\][[:space:]]*$/); next }
    in_pkg && /^[[:space:]]*version[[:space:]]*=/ {
      sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit
    }' Cargo.toml
}

# Builds the `jobnet` CNI plugin as a static-pie executable (glibc's static
# libraries, `-C target-feature=+crt-static`) with the cargo profile $1
# (release or dev; further arguments go to cargo, e.g. --quiet), checks that
# the result has no program interpreter and no shared library, and prints its
# path; cargo's output goes to stderr. Honours CARGO_TARGET_DIR.
#
# Static because the plugin is installed into the host's /opt/cni/bin and
# runs against a glibc we do not ship (a dynamic one fails on an older host
# with "GLIBC_2.xx not found"), and because process start is part of every
# ADD and DEL. jobnetd and jobnetctl stay dynamic: jobnetd dlopens
# libibverbs' providers.
#
# crt-static breaks build scripts and proc macros on gnu, so the flag reaches
# target artifacts only: the build names the host triple with --target and
# sets the flag in CARGO_TARGET_<TRIPLE>_RUSTFLAGS. RUSTFLAGS, which would
# replace those flags, is folded into them (with --target it applies to
# target artifacts only anyway). The binary is
# $CARGO_TARGET_DIR/<triple>/<release|debug>/jobnet.
build_static_plugin() {
  local profile=${1:-release} dir triple var flags bin
  [ $# -gt 0 ] && shift
  case "$profile" in
    dev|test) dir=debug ;;
    release|bench) dir=release ;;
    *) dir=$profile ;;
  esac
  triple=$(rustc -vV | sed -n 's/^host: //p')
  if [ -z "$triple" ]; then
    echo "build_static_plugin: no host triple in rustc -vV" >&2
    return 1
  fi
  var=CARGO_TARGET_$(tr 'a-z.-' 'A-Z__' <<<"$triple")_RUSTFLAGS
  flags="${RUSTFLAGS:+$RUSTFLAGS }${!var:+${!var} }-C target-feature=+crt-static"
  env -u RUSTFLAGS "$var=$flags" cargo build --profile "$profile" --target "$triple" \
    -p jobnet-cni --bin jobnet "$@" >&2 || {
    echo "build_static_plugin: cargo build of the static plugin failed" >&2
    return 1
  }
  bin="${CARGO_TARGET_DIR:-target}/$triple/$dir/jobnet"
  if [ ! -x "$bin" ]; then
    echo "build_static_plugin: $bin is missing after the build" >&2
    return 1
  fi
  if ! plugin_is_static "$bin"; then
    echo "build_static_plugin: $bin is not statically linked:" \
      "$(readelf -lW "$bin" 2>&1 | grep -i interpreter) $(readelf -dW "$bin" 2>&1 | grep NEEDED | tr -s ' \n' ' ')" >&2
    return 1
  fi
  echo "$bin"
}

# Whether the ELF file $1 is statically linked: readelf shows no program
# interpreter (PT_INTERP) and no needed shared library (DT_NEEDED).
plugin_is_static() {
  local headers dynamic
  headers=$(readelf -lW "$1" 2>/dev/null) || return 1
  dynamic=$(readelf -dW "$1" 2>/dev/null) || return 1
  ! grep -q 'Requesting program interpreter' <<<"$headers" &&
    ! grep -q '(NEEDED)' <<<"$dynamic"
}
