#!/usr/bin/env bash
# A node-opcua client for the running OPC UA demo (make demo-opcua): logs in
# to the gateway at opc.tcp://127.0.0.1:4841 (SecurityPolicy None) and
# prints one line per step with each node's status.
#
#   examples/opcua/client.sh USER PASSWORD read NODE…
#   examples/opcua/client.sh USER PASSWORD write NODE VALUE      (a Double, as Setpoint is)
#   examples/opcua/client.sh USER PASSWORD start SPEED           (PLC.Start, an Int32)
#   examples/opcua/client.sh USER PASSWORD steps JSON            (the steps of gateway/opcua/opcuatest/peers/client.js)
#
# USER "anonymous" logs in without a user (PASSWORD is ignored). NODE is a
# node id (ns=1;s=Setpoint: quote it, the ; ends a shell command) or the
# name of one of the simulator's nodes in namespace 1 (Setpoint).
# Exit status: 0 when the steps ran, whatever their status codes; 1 when
# the client could not connect or log in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
usage() {
  sed -n '6,9p' "$0" | sed 's/^#//' >&2
  exit 2
}
[ $# -ge 3 ] || usage
user=$1 password=$2 what=$3
shift 3
command -v node >/dev/null 2>&1 || { echo "client.sh needs node (make demo-opcua installs it)" >&2; exit 1; }
export NODE_PATH="$root/.cache/node/node_modules"
[ -d "$NODE_PATH/node-opcua" ] || { echo "client.sh needs node-opcua in $NODE_PATH (make demo-opcua installs it)" >&2; exit 1; }
[ -d "$here/run" ] || { echo "no OPC UA demo has run here ($here/run missing): run make demo-opcua first" >&2; exit 1; }

# node builds the JSON: node ids and values need no escaping by hand.
scenario=$(node -e '
  const [user, password, what, certDir, ...args] = process.argv.slice(1);
  const node = (n) => n.includes("=") ? n : `ns=1;s=${n}`;
  let steps;
  switch (what) {
    case "read": steps = [{read: args.map(node)}]; break;
    case "write": {
      if (args.length !== 2 || isNaN(Number(args[1]))) { console.error("write NODE VALUE: VALUE a number"); process.exit(2); }
      steps = [{write: [{node: node(args[0]), value: Number(args[1]), dataType: "Double"}]}, {read: [node(args[0])]}];
      break;
    }
    case "start": {
      if (args.length !== 1 || !/^-?[0-9]+$/.test(args[0])) { console.error("start SPEED: SPEED a whole number"); process.exit(2); }
      steps = [{call: {object: "ns=1;s=PLC", method: "ns=1;s=Start", args: [{dataType: "Int32", value: Number(args[0])}]}}, {read: ["ns=1;s=Speed"]}];
      break;
    }
    case "steps": steps = JSON.parse(args[0]); break;
    default: console.error(`unknown step ${what}: read, write, start or steps`); process.exit(2);
  }
  const s = {endpoint: "opc.tcp://127.0.0.1:4841", applicationUri: "urn:interlock:test:engineering-client", certDir, steps};
  if (user !== "anonymous") { s.user = user; s.password = password; }
  console.log(JSON.stringify(s));
' "$user" "$password" "$what" "$here/run/client-pki" "$@") || exit 2

# client.js prints JSON lines (and node-opcua's warnings on stderr, dropped).
status=0
out=$(node "$root/gateway/opcua/opcuatest/peers/client.js" "$scenario" 2>/dev/null) || status=$?
# Each line says what was asked and what came back:
#   read    ns=1;s=Setpoint = 50  Good
#   write   ns=1;s=Setpoint := 55.5  BadUserAccessDenied
#   call    ns=1;s=Start(300)  Good  outputs true
#   browse  ns=1;s=PLC  Good  Start (ns=1;s=Start), …
node -e '
  const steps = JSON.parse(process.argv[1]).steps;
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(l => l.startsWith("{")).map(l => JSON.parse(l));
  let i = 0;
  const show = (v) => v === undefined || v === null ? "(no value)" : typeof v === "object" ? JSON.stringify(v) : String(v);
  for (const r of lines) {
    if (r.step === "close") continue;
    if (r.step === "connect") { if (!r.ok) console.log("  connect failed:", r.error); continue; }
    if (r.step === "session") { if (!r.ok) console.log("  session refused:", r.error); continue; }
    const step = steps[i++] || {};
    const out = [];
    if (r.step === "read") {
      for (const v of r.results) out.push(`${v.node} = ${show(v.value)}  ${v.status.name}`);
    } else if (r.step === "write") {
      r.results.forEach((v, j) => out.push(`${v.node} := ${show((step.write[j] || {}).value)}  ${v.status.name}`));
    } else if (r.step === "call") {
      const args = (step.call.args || []).map(a => show(a.value)).join(", ");
      const outputs = (r.outputs || []).length ? `  outputs ${r.outputs.map(o => show(o.value)).join(", ")}` : "";
      out.push(`${step.call.method}(${args})  ${r.status.name}${outputs}`);
    } else if (r.step === "browse") {
      const refs = r.references || [];
      out.push(`${r.node}  ${r.status.name}${refs.length ? `  ${refs.map(x => `${x.browseName} (${x.nodeId})`).join(", ")}` : ""}`);
    } else if (r.step !== "sleep") {
      out.push(JSON.stringify(r));
    }
    for (const o of out) console.log(`  ${r.step.padEnd(7)} ${o}`);
  }' "$scenario" <<<"$out"
if [ "$status" -ne 0 ]; then
  echo "client.sh: no session through the gateway at opc.tcp://127.0.0.1:4841 (is the OPC UA demo running? make demo-opcua)" >&2
  exit 1
fi
