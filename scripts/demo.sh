# Shared by the demo scripts (examples/*/run.sh); source it from one.

# demo_prepare DIR PEER…: installs the peers the demo uses (names of
# scripts/install-peers.sh), builds bin/interlock and makes a fresh DIR/run
# with DIR/policy copied in (without its tests). Sets root and run, and
# leaves the shell in root.
demo_prepare() {
  local here=$1
  shift
  root=$(cd "$here/../.." && pwd)
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

# demo_wait LOG PID PATTERN WHAT: waits up to 30 s for PATTERN in LOG; if
# PID ends first, prints LOG and exits.
demo_wait() {
  local log=$1 pid=$2 pattern=$3 what=$4
  for _ in $(seq 300); do
    grep -q "$pattern" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$what did not start:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "$what did not start within 30 s:"; cat "$log"; exit 1
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
