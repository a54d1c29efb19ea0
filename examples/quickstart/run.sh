#!/usr/bin/env bash
# Quickstart: builds interlock, starts the bundled PLC simulator and the
# gateway with the example policy, shows an allowed read and a denied write
# with mbpoll, and prints what to try next. Ctrl-C stops everything. While
# it runs, a second run refuses to start (and leaves this one alone).
# QUICKSTART_EXIT=1 stops after the demo (used by the tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/demo.sh"
demo_claim "$here" 5020 5502
demo_prepare "$here" mbpoll
cp "$here/config.yaml" "$run/config.yaml"

bin/interlock check --config "$run/config.yaml"

demo_start "$run/sim.log" bin/interlock sim modbus --listen 127.0.0.1:5502 --set 100=1500,101=42,200=900
sim=$!
cleanup() { kill "${gw:-}" "$sim" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT    # Ctrl-C is how a demo ends: not a failure (make says nothing)
trap 'exit 143' TERM
# The gateway connects upstream at the first call: the simulator must be
# listening before the demo's first mbpoll.
demo_wait "$run/sim.log" "$sim" "listening on" "the PLC simulator (127.0.0.1:5502)"

demo_start "$run/gateway.log" bin/interlock run --config "$run/config.yaml" --log-format console
gw=$!
demo_wait "$run/gateway.log" "$gw" "gateway ready" "the gateway (127.0.0.1:5020)"

mb="mbpoll -m tcp -p 5020 -a 1 -0 -1 -q 127.0.0.1"
echo
echo "== a read through the gateway (allowed: reads always are)"
echo "\$ mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -c 2 -1 127.0.0.1"
mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -c 2 -1 127.0.0.1 | grep -E '^\[' || true
echo
# The example policy has a monthly shutdown window (the 1st of the month,
# 05:00-08:00 Europe/Berlin): ask the policy whether a window is open now.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
decision=$(printf '{"time":"%s","gateway":{"id":"quickstart-gw1","listener":"plc1"},"source":{"ip":"127.0.0.1","name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"plc1","upstream":"tcp://127.0.0.1:5502","unit_id":1},"protocol":"modbus","operation":{"function":"write_single_register","access":"write","code":6,"address":100,"quantity":1,"values":[1600]}}' "$now" |
  bin/interlock policy eval --config "$run/config.yaml" --input - 2>/dev/null || true)
if grep -q '"allow": true' <<<"$decision"; then
  window=$(grep -o 'maintenance_window:[^"]*' <<<"$decision" | head -n 1 || true)
  echo "== a write inside a maintenance window (allowed: \"${window#maintenance_window:}\" is open now; outside a window it is denied)"
else
  echo "== a write outside a maintenance window (denied: Illegal function)"
fi
echo "\$ mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -1 127.0.0.1 1600"
mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -1 127.0.0.1 1600 2>&1 | grep -iE 'written|fail|illegal' || true
sleep 0.2

rel=${run#"$root"/}
cat <<MSG

== Interlock is running
  gateway    127.0.0.1:5020  ->  PLC simulator 127.0.0.1:5502   (log: $run/gateway.log)
  policy     $run/policy     (edit it: the gateway reloads within a second)
  audit log  $run/audit/audit.jsonl

Try next, in another terminal (the commands run from the repository root):
  cd $(printf %q "$root")
  # read holding registers 100-101 (allowed)
  mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -c 2 -1 127.0.0.1
  # write 1600 to register 100 (denied unless a maintenance window is open; the example's
  # monthly shutdown window: the 1st of the month, 05:00-08:00 Europe/Berlin)
  mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -1 127.0.0.1 1600
  # open a change ticket for alice on plc1, then write again (allowed, the audit names the ticket)
  bin/interlock ticket open --config $rel/config.yaml --user alice --target plc1 --access write --for 1h --reason CHG-1234
  bin/interlock ticket list --config $rel/config.yaml
  mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -1 127.0.0.1 1600
  # or open a one-hour maintenance window for plc1 in the policy data (uses python3)
  examples/quickstart/open-window.sh
  # write into the protected range 200-209 (allowed with the ticket or in the window, with an alert)
  mbpoll -m tcp -p 5020 -a 1 -0 -r 205 -1 127.0.0.1 7
  # who called what, and was it approved
  bin/interlock audit query --log $rel/audit/audit.jsonl
  bin/interlock audit verify $rel/audit/audit.jsonl
  # the evidence report for an auditor: one HTML page, open it in a browser
  bin/interlock audit report --config $rel/config.yaml --out $rel/report.html
  # the example policy's own tests
  bin/interlock policy test examples/quickstart/policy

MSG

demo_end "$gw"
