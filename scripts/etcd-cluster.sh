#!/usr/bin/env bash
# A local etcd cluster for demo and benchmark scripts, started the way the
# test fixture (tests/src/etcd.rs) starts one: Debian's /usr/bin/etcd members
# on free client/peer ports, --heartbeat-interval 50 --election-timeout 500,
# optionally inside a network namespace.
#
#   etcd-cluster.sh start <dir> [--members N] [--host IP] [--netns NS]
#       Starts N members (default 1) listening on IP (default 127.0.0.1),
#       inside netns NS if given, waits (at most 20 s) until the cluster
#       answers, and prints the client endpoints, comma-separated (also kept
#       in <dir>/endpoints). <dir> holds m<i>.pid, m<i>.log and m<i>.data.
#   etcd-cluster.sh stop <dir>
#       Stops the members (SIGTERM, SIGKILL after 2 s) and removes their data
#       dirs; logs stay.
set -euo pipefail

ETCD=/usr/bin/etcd
ETCDCTL=/usr/bin/etcdctl
READY_SECS=20
ATTEMPTS=5

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "etcd-cluster.sh: $*" >&2; exit 1; }

# Runs a command inside the cluster's netns, if any.
in_ns() {
  if [ -n "$netns" ]; then ip netns exec "$netns" "$@"; else "$@"; fi
}

# Whether process $1 exists and is not a zombie.
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Whether the pid in file $1 is a running etcd member of $dir (a pid the
# kernel reused for something else is never signalled).
member_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--data-dir=$dir/"
}

# A port in 20000-32767 (below the kernel's ephemeral range, so outgoing
# connections do not take it) that nothing listens on and not in $taken.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12768))
    case " $taken " in *" $p "*) continue ;; esac
    if [ -z "$(in_ns ss -Htan "sport = :$p")" ]; then
      taken="$taken $p"
      echo "$p"
      return 0
    fi
  done
  die "no free port found on $host"
}

url() { # scheme host port
  case $2 in *:*) echo "$1://[$2]:$3" ;; *) echo "$1://$2:$3" ;; esac
}

stop_members() {
  local f pid deadline
  for f in "$dir"/m*.pid; do
    [ -e "$f" ] || continue
    if member_alive "$f"; then
      kill -TERM "$(cat "$f")" 2>/dev/null || true
    fi
  done
  deadline=$((SECONDS + 2))
  for f in "$dir"/m*.pid; do
    [ -e "$f" ] || continue
    while member_alive "$f" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if member_alive "$f"; then
      pid=$(cat "$f")
      kill -KILL "$pid" 2>/dev/null || true
      while [ -d "/proc/$pid" ] && [ "$SECONDS" -lt $((deadline + 5)) ]; do sleep 0.1; done
    fi
    rm -f "$f"
  done
}

start_once() {
  local i names=() clients=() peers=() initial="" token
  taken=""
  for i in $(seq 0 $((members - 1))); do
    names+=("m$i")
    clients+=("$(url http "$host" "$(free_port)")")
    peers+=("$(url http "$host" "$(free_port)")")
    initial="$initial${initial:+,}m$i=${peers[$i]}"
  done
  token="jobnet-$$-$RANDOM-$(date +%s%N)"
  # `ip netns exec` execs etcd in place, so $! is the member itself.
  local launch=("$ETCD")
  [ -z "$netns" ] || launch=(ip netns exec "$netns" "$ETCD")
  for i in $(seq 0 $((members - 1))); do
    rm -rf "$dir/m$i.data"
    "${launch[@]}" \
      --name="m$i" --data-dir="$dir/m$i.data" \
      --listen-client-urls="${clients[$i]}" --advertise-client-urls="${clients[$i]}" \
      --listen-peer-urls="${peers[$i]}" --initial-advertise-peer-urls="${peers[$i]}" \
      --initial-cluster="$initial" --initial-cluster-token="$token" \
      --initial-cluster-state=new \
      --heartbeat-interval=50 --election-timeout=500 \
      --logger=zap --log-outputs=stderr \
      </dev/null >>"$dir/m$i.log" 2>&1 &
    echo $! >"$dir/m$i.pid"
  done
  endpoints=$(IFS=,; echo "${clients[*]}")
  local deadline=$((SECONDS + READY_SECS))
  while [ "$SECONDS" -lt "$deadline" ]; do
    for i in $(seq 0 $((members - 1))); do
      running "$(cat "$dir/m$i.pid")" || return 1
    done
    if in_ns env ETCDCTL_API=3 "$ETCDCTL" --endpoints="$endpoints" \
      --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

cmd=${1:-}
dir=${2:-}
case $cmd in
  -h|--help|help) usage; exit 0 ;;
  start|stop) ;;
  *) usage >&2; exit 2 ;;
esac
[ -n "$dir" ] || die "$cmd needs a directory"
members=1
host=127.0.0.1
netns=""
shift 2
while [ $# -gt 0 ]; do
  case $1 in
    --members) members=${2:?--members needs a number}; shift 2 ;;
    --host) host=${2:?--host needs an address}; shift 2 ;;
    --netns) netns=${2:?--netns needs a name}; shift 2 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

if [ "$cmd" = stop ]; then
  [ -d "$dir" ] || exit 0
  dir=$(realpath "$dir")
  stop_members
  rm -rf "$dir"/m*.data "$dir/endpoints"
  exit 0
fi

[ -x "$ETCD" ] && [ -x "$ETCDCTL" ] || die "etcd is not installed (scripts/install-deps.sh)"
case $members in ''|*[!0-9]*|0) die "--members must be a positive number" ;; esac
if [ -n "$netns" ] && [ ! -e "/run/netns/$netns" ]; then
  die "no network namespace $netns"
fi
mkdir -p "$dir"
dir=$(realpath "$dir")
for f in "$dir"/m*.pid; do
  [ -e "$f" ] || continue
  member_alive "$f" && die "$dir already has running members (stop it first)"
done
for attempt in $(seq "$ATTEMPTS"); do
  if start_once; then
    echo "$endpoints" >"$dir/endpoints"
    echo "$endpoints"
    exit 0
  fi
  stop_members
  # Another process may have taken a port between the check and etcd's bind.
  if ! grep -qs "address already in use" "$dir"/m*.log; then
    break
  fi
  echo "etcd-cluster.sh: a port was taken, retrying ($attempt/$ATTEMPTS)" >&2
  for f in "$dir"/m*.log; do mv "$f" "$f.$attempt"; done
done
tail -n 5 "$dir"/m*.log >&2 || true
rm -rf "$dir"/m*.data
die "the cluster did not become ready within ${READY_SECS}s (logs in $dir)"
