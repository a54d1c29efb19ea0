#!/usr/bin/env bash
# Opens a maintenance window for plc1 from now for one hour (or $1 minutes)
# in the running quickstart's policy data; the gateway picks it up within a
# second. A stand-in for a change ticket.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data="$here/run/policy/data.json"
[ -f "$data" ] || { echo "no running quickstart ($data missing): run examples/quickstart/run.sh first" >&2; exit 1; }
minutes=${1:-60}
/usr/bin/python3 - "$data" "$minutes" <<'PY'
import json, sys, datetime
path, minutes = sys.argv[1], int(sys.argv[2])
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
end = now + datetime.timedelta(minutes=minutes)
d = json.load(open(path))
d["maintenance_windows"].append({
    "name": "quickstart " + now.strftime("%H:%M"),
    "start": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "targets": ["plc1"],
})
tmp = path + ".tmp"
json.dump(d, open(tmp, "w"), indent=2)
import os; os.replace(tmp, path)
print("maintenance window for plc1 open until", end.strftime("%H:%M:%SZ"))
PY
