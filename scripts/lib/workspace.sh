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
