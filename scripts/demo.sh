# Shared by the demo scripts (examples/*/run.sh); source it from one.

# demo_claim DIR PORT…: makes sure this is the only copy of the demo in DIR
# and that its ports are free, before anything is built or deleted. A demo
# already running is left alone: this run stops with a message naming its
# pid. The claim is a lock on DIR/run.lock held until the script exits;
# processes started with demo_start do not inherit it. Sets root and name.
demo_claim() {
  local here=$1 port
  shift
  root=$(cd "$here/../.." && pwd)
  name=${here#"$root"/}
  local lock="$here/run.lock"
  if command -v flock >/dev/null 2>&1; then
    # fd 9 stays open for the life of the script: the lock ends with it,
    # however it ends.
    exec 9<>"$lock"
    if ! flock -n 9; then
      demo_refuse "$(tr -dc 0-9 <"$lock" 2>/dev/null)"
    fi
  else
    local pid
    pid=$(tr -dc 0-9 <"$lock" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != $$ ] && kill -0 "$pid" 2>/dev/null &&
      grep -q "$name/run.sh" "/proc/$pid/cmdline" 2>/dev/null; then
      demo_refuse "$pid"
    fi
  fi
  echo $$ >"$lock"
  for port in "$@"; do
    # bash's /dev/tcp: a connect that succeeds means someone listens there.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$name: port 127.0.0.1:$port is in use, and this demo needs it (ports: $*)." >&2
      echo "  Another program holds it (a gateway left behind, or this demo run from another copy of" >&2
      echo "  the repository); this names it: ss -ltnp 'sport = :$port'. Stop it and run the demo again." >&2
      exit 1
    fi
  done
}

demo_refuse() {
  local pid=${1:-unknown}
  echo "$name: a demo is already running (pid $pid), using $name/run/; this run stops and leaves it alone." >&2
  echo "  Stop it first: Ctrl-C in its terminal, or: kill $pid" >&2
  exit 1
}

# demo_prepare DIR PEER…: after demo_claim, installs the peers the demo uses
# (names of scripts/install-peers.sh), builds bin/interlock and makes a
# fresh DIR/run with DIR/policy copied in (without its tests). Sets run, and
# leaves the shell in root.
demo_prepare() {
  local here=$1
  shift
  [ -n "${name:-}" ] || { echo "demo_prepare: call demo_claim first" >&2; exit 2; }
  cd "$root"
  scripts/install-peers.sh "$@"
  echo "== building bin/interlock"
  mkdir -p bin
  go build -ldflags "-X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o bin/interlock ./cmd/interlock
  run="$here/run"
  rm -rf "$run"
  mkdir -p "$run"
  cp -r "$here/policy" "$run/policy"
  rm -f "$run/policy/"*_test.rego
}

# demo_start LOG CMD…: starts CMD in the background with its output in LOG,
# without the demo's lock (a process left behind must not hold it); its pid
# is in $!.
demo_start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 9>&- &
}

# demo_wait LOG PID PATTERN WHAT: waits up to DEMO_WAIT_SECONDS (30) for
# PATTERN in LOG; if PID ends first, or the time runs out, says so, names
# LOG, prints it and exits 1.
demo_wait() {
  local log=$1 pid=$2 pattern=$3 what=$4 limit=${DEMO_WAIT_SECONDS:-30}
  local tries=$((limit * 10))
  for _ in $(seq "$tries"); do
    grep -q "$pattern" "$log" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what did not start (it exited); its log, $log:" >&2
      sed 's/^/  /' "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$what did not start within $limit s (no \"$pattern\" in its log); its log, $log:" >&2
  sed 's/^/  /' "$log" >&2
  exit 1
}

# demo_end PID: with QUICKSTART_EXIT=1 (the tests) ends at once, otherwise
# runs until PID ends or Ctrl-C.
demo_end() {
  if [ "${QUICKSTART_EXIT:-0}" = 1 ]; then
    exit 0
  fi
  echo "Ctrl-C stops the gateway and the simulator."
  wait "$1"
}
