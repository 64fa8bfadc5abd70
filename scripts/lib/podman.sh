# Sourced by the scripts that run rootful podman on a test host.

# Prints the containers.conf sections rootful podman needs on this kind of
# host: ulimits it may set without CAP_SYS_RESOURCE, cgroupfs and runc for
# the hybrid cgroup layout, file events (no journald).
podman_host_conf() {
  cat <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
}
