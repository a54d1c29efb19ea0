#!/usr/bin/env bash
# Records sample-audit.jsonl, the audit log the CI example replays: the
# quickstart gateway, configuration and policy in front of the bundled PLC
# simulator, and a known mix of calls. mbpoll makes the reads and writes
# (outside any window, into the protected range, under a change ticket and
# after it closed); python3's socket module sends FC 8 diagnostics, a device
# identification request and a read from 127.0.0.2, a workstation that is
# not in the source inventory.
#
# Re-record it when the quickstart policy changes on purpose what these
# calls get: CI replays it under the policy of every change and fails when a
# recorded call would newly be denied.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

for tool in mbpoll python3 go; do
  command -v "$tool" >/dev/null || { echo "record-sample.sh: $tool is needed (scripts/install-peers.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/interlock" ./cmd/interlock
il="$work/interlock"
cp examples/quickstart/config.yaml "$work/config.yaml"
mkdir "$work/policy"
cp examples/quickstart/policy/* "$work/policy/"
rm -f "$work/policy/"*_test.rego

"$il" sim modbus --listen 127.0.0.1:5502 --set 100=1500,101=42,200=900 >"$work/sim.log" 2>&1 &
pids+=($!)
"$il" run --config "$work/config.yaml" --log-format json >"$work/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
for _ in $(seq 100); do
  grep -q '"gateway ready"' "$work/gateway.log" && break
  kill -0 "$gw" 2>/dev/null || { echo "the gateway did not start:" >&2; cat "$work/gateway.log" >&2; exit 1; }
  sleep 0.1
done

# mbpoll OPTIONS… 127.0.0.1 [VALUES…]: one request on its own connection.
mb() { mbpoll -m tcp -p 5020 -a 1 -0 -1 -o 5 "$@" >>"$work/mbpoll.log" 2>&1 || true; }

mb -r 100 -c 2 127.0.0.1          # read holding registers: allowed
mb -r 200 -c 4 127.0.0.1          # read the protected range: allowed
mb -t 0 -r 0 -c 8 127.0.0.1       # read coils: allowed
mb -t 3 -r 0 -c 4 127.0.0.1       # read input registers: allowed
mb -r 100 127.0.0.1 1600          # write outside any window: denied
mb -r 205 127.0.0.1 7             # write into the protected range: denied, alert
mb -t 0 -r 3 127.0.0.1 1          # write a coil: denied

/usr/bin/env python3 - <<'PY'
import socket, struct

def call(pdu, source=None):
    s = socket.create_connection(("127.0.0.1", 5020), timeout=5,
                                 source_address=(source, 0) if source else None)
    s.sendall(struct.pack(">HHHB", 1, 0, len(pdu) + 1, 1) + pdu)
    try:
        s.recv(260)
    except OSError:
        pass
    s.close()

call(bytes.fromhex("08 0000 1234"))                  # FC 8 return query data: denied
call(bytes.fromhex("2b 0e 01 00"))                   # FC 43/14 device identification: allowed
call(bytes.fromhex("03 0064 0002"), "127.0.0.2")     # a read from outside the inventory: allowed, alert
PY

"$il" ticket open --config "$work/config.yaml" --id T-CI-1 --user alice --target plc1 --access write \
  --for 1h --reason CHG-1234 >/dev/null
mb -r 100 127.0.0.1 1601          # write under the ticket: allowed, the record names T-CI-1
mb -r 205 127.0.0.1 8             # protected range under the ticket: allowed, alert
"$il" ticket close --config "$work/config.yaml" T-CI-1 >/dev/null
mb -r 100 127.0.0.1 1602          # write after the ticket closed: denied

kill -TERM "$gw"
wait "$gw" || true
"$il" audit verify "$work/audit/audit.jsonl"
cp "$work/audit/audit.jsonl" "$here/sample-audit.jsonl"
chmod 644 "$here/sample-audit.jsonl"
echo "wrote $here/sample-audit.jsonl ($(grep -c '"event":"call"' "$here/sample-audit.jsonl") calls)"
"$il" policy replay --config "$here/config.yaml" --audit "$here/sample-audit.jsonl" --policy examples/quickstart/policy
