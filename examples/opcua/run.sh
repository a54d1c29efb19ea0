#!/usr/bin/env bash
# OPC UA quickstart: builds interlock, makes the gateway's PKI, starts the
# bundled OPC UA simulator and the gateway with the example policy and a
# users file, then shows with a node-opcua client an operator's write denied
# and an engineer's method call allowed within its argument limit and
# denied above it. Prints what to try next. Ctrl-C stops everything.
# QUICKSTART_EXIT=1 stops after the demo (used by the tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/demo.sh"
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

bin/interlock sim opcua --listen opc.tcp://127.0.0.1:4840 >"$run/sim.log" 2>&1 &
sim=$!
cleanup() { kill "${gw:-}" "$sim" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT    # Ctrl-C is how a demo ends: not a failure (make says nothing)
trap 'exit 143' TERM
demo_wait "$run/sim.log" "$sim" "listening on" "the simulator"

bin/interlock run --config "$run/interlock.yaml" --log-format console >"$run/gateway.log" 2>&1 &
gw=$!
demo_wait "$run/gateway.log" "$gw" "gateway ready" "the gateway"

export NODE_PATH="$root/.cache/node/node_modules"
client="$root/gateway/opcua/opcuatest/peers/client.js"
# uaclient USER PASSWORD STEPS: runs the node-opcua client through the
# gateway and prints one line per step.
uaclient() {
  node "$client" "{\"endpoint\":\"opc.tcp://127.0.0.1:4841\",\"user\":\"$1\",\"password\":\"$2\",
    \"applicationUri\":\"urn:interlock:test:engineering-client\",\"certDir\":\"$run/client-pki\",\"steps\":$3}" 2>/dev/null |
  node -e '
    const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(l => l.startsWith("{")).map(l => JSON.parse(l));
    for (const r of lines) {
      if (r.step === "connect" || r.step === "close") continue;
      if (r.step === "session") { if (!r.ok) console.log("  session refused:", r.error); continue; }
      const st = r.status ? r.status.name : "";
      const vals = (r.results || []).map(v => `${v.node}=${v.value === undefined ? "" : v.value} ${v.status.name}`).join(", ");
      console.log(`  ${r.step.padEnd(6)} ${st} ${vals}`.trimEnd());
    }' || true
}

echo
echo "== bob (operator) reads the setpoint, then tries to write it (denied: operators read only)"
uaclient bob operator-pw '[{"read":["ns=1;s=Setpoint"]},{"write":[{"node":"ns=1;s=Setpoint","value":55.5,"dataType":"Double"}]}]'
echo
echo "== alice (engineer) starts the line at speed 300 (allowed), then at 700 (denied: the policy's limit is 500)"
uaclient alice engineer-pw '[{"call":{"object":"ns=1;s=PLC","method":"ns=1;s=Start","args":[{"dataType":"Int32","value":300}]}},{"call":{"object":"ns=1;s=PLC","method":"ns=1;s=Start","args":[{"dataType":"Int32","value":700}]}},{"read":["ns=1;s=Speed"]}]'
sleep 0.2

cat <<MSG

== Interlock is running
  gateway    opc.tcp://127.0.0.1:4841  ->  OPC UA simulator opc.tcp://127.0.0.1:4840   (log: $run/gateway.log)
  users      alice / engineer-pw (engineer), bob / operator-pw (operator), anonymous (read only)
  policy     $run/policy     (edit it: the gateway reloads within a second)
  audit log  $run/audit/audit.jsonl

Try next:
  # any OPC UA client (UaExpert: add opc.tcp://127.0.0.1:4841) — log in as alice or bob
  # alice may write the setpoint only inside a maintenance window or under a change ticket:
  # see $run/policy/data.json (opcua.maintenance_windows) and examples/opcua/policy/interlock.rego
  bin/interlock ticket open --config $run/interlock.yaml --user alice --target line1 --access write --for 1h --reason CHG-1234
  # who called what, and was it approved
  bin/interlock audit query --log $run/audit/audit.jsonl --protocol opcua
  bin/interlock audit verify $run/audit/audit.jsonl
  bin/interlock policy test examples/opcua/policy
  bin/interlock certs list --pki $run/pki

MSG

demo_end "$gw"
