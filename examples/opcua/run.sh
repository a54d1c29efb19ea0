#!/usr/bin/env bash
# OPC UA quickstart: builds interlock, makes the gateway's PKI, starts the
# bundled OPC UA simulator and the gateway with the example policy and a
# users file, then shows with a node-opcua client an operator's write denied
# and an engineer's method call allowed within its argument limit and
# denied above it. Prints what to try next. Ctrl-C stops everything.
# While it runs, a second run refuses to start (and leaves this one alone).
# QUICKSTART_EXIT=1 stops after the demo (used by the tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/demo.sh"
demo_claim "$here" 4840 4841
demo_prepare "$here" node-opcua

echo "== the gateway's PKI and users"
bin/interlock certs init --pki "$run/pki" --uri urn:interlock:quickstart:line1 --host localhost,127.0.0.1 --no-audit-key >/dev/null
printf 'engineer-pw\n' | bin/interlock users add --file "$run/users.yaml" --user alice --roles engineer --password-stdin
printf 'operator-pw\n' | bin/interlock users add --file "$run/users.yaml" --user bob --roles operator --password-stdin

cat >"$run/interlock.yaml" <<YAML
# OPC UA quickstart (written by examples/opcua/run.sh; see examples/opcua/interlock.yaml)
gateway:
  id: quickstart-gw1
listeners:
  - name: line1
    protocol: opcua
    listen: opc.tcp://127.0.0.1:4841
    upstream: opc.tcp://127.0.0.1:4840
    opcua:
      pki: ./pki
      security_policies: [None, Basic256Sha256]
      anonymous: true
      users: ./users.yaml             # passwords are checked here ...
      upstream_identity: anonymous    # ... the simulator takes anonymous sessions only
      upstream_security_policy: None
policy:
  path: ./policy
audit:
  path: ./audit/audit.jsonl
admin:
  socket: ./admin.sock                # interlock ticket open|list|close
YAML

bin/interlock check --config "$run/interlock.yaml"

demo_start "$run/sim.log" bin/interlock sim opcua --listen opc.tcp://127.0.0.1:4840
sim=$!
cleanup() { kill "${gw:-}" "$sim" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT    # Ctrl-C is how a demo ends: not a failure (make says nothing)
trap 'exit 143' TERM
demo_wait "$run/sim.log" "$sim" "listening on" "the OPC UA simulator (127.0.0.1:4840)"

demo_start "$run/gateway.log" bin/interlock run --config "$run/interlock.yaml" --log-format console
gw=$!
demo_wait "$run/gateway.log" "$gw" "gateway ready" "the gateway (127.0.0.1:4841)"

echo
echo "== bob (operator) reads the setpoint, then tries to write it (denied: operators read only)"
examples/opcua/client.sh bob operator-pw steps '[{"read":["ns=1;s=Setpoint"]},{"write":[{"node":"ns=1;s=Setpoint","value":55.5,"dataType":"Double"}]}]' || true
echo
echo "== alice (engineer) starts the line at speed 300 (allowed), then at 700 (denied: the policy's limit is 500)"
examples/opcua/client.sh alice engineer-pw steps '[{"call":{"object":"ns=1;s=PLC","method":"ns=1;s=Start","args":[{"dataType":"Int32","value":300}]}},{"call":{"object":"ns=1;s=PLC","method":"ns=1;s=Start","args":[{"dataType":"Int32","value":700}]}},{"read":["ns=1;s=Speed"]}]' || true
sleep 0.2

rel=${run#"$root"/}
cat <<MSG

== Interlock is running
  gateway    opc.tcp://127.0.0.1:4841  ->  OPC UA simulator opc.tcp://127.0.0.1:4840   (log: $run/gateway.log)
  users      alice / engineer-pw (engineer), bob / operator-pw (operator), anonymous (read only)
  policy     $run/policy     (edit it: the gateway reloads within a second)
  audit log  $run/audit/audit.jsonl

Try next, in another terminal (the commands run from the repository root):
  cd $(printf %q "$root")
  # alice writes the setpoint (denied unless a maintenance window is open: see
  # $rel/policy/data.json, opcua.maintenance_windows, and examples/opcua/policy/interlock.rego)
  examples/opcua/client.sh alice engineer-pw write Setpoint 55.5
  # open a change ticket for alice on line1, then write again (allowed, the audit names the ticket;
  # with an alert, since a None channel proves no client ApplicationURI)
  bin/interlock ticket open --config $rel/interlock.yaml --user alice --target line1 --access write --for 1h --reason CHG-1234
  examples/opcua/client.sh alice engineer-pw write Setpoint 55.5
  # anonymous reads (allowed), anonymous writes (denied)
  examples/opcua/client.sh anonymous - read Setpoint Speed Temperature
  examples/opcua/client.sh anonymous - write Setpoint 20
  # who called what, and was it approved
  bin/interlock audit query --log $rel/audit/audit.jsonl --protocol opcua
  bin/interlock audit verify $rel/audit/audit.jsonl
  # the evidence report for an auditor: one HTML page, open it in a browser
  bin/interlock audit report --config $rel/interlock.yaml --out $rel/report.html
  # the example policy's own tests, and the gateway's certificates
  bin/interlock policy test examples/opcua/policy
  bin/interlock certs list --pki $rel/pki
  # any other OPC UA client (UaExpert: add opc.tcp://127.0.0.1:4841, log in as alice or bob)

MSG

demo_end "$gw"
