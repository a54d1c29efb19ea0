#!/usr/bin/env bash
# Opens a maintenance window for plc1 from now for one hour (or $1 minutes)
# in the running quickstart's policy data; the gateway picks it up within a
# second. A stand-in for a change ticket.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data="$here/run/policy/data.json"
[ -f "$data" ] || { echo "no running quickstart ($data missing): run make demo first" >&2; exit 1; }
# The running demo holds run.lock (scripts/demo.sh): a window in the data
# of a demo that has ended would open nothing.
if command -v flock >/dev/null 2>&1 && flock -n "$here/run.lock" true 2>/dev/null; then
  echo "the quickstart is not running (its run.lock is free): run make demo first" >&2
  exit 1
fi
minutes=${1:-60}
case $minutes in '' | *[!0-9]*) echo "usage: $0 [MINUTES] (a whole number; $minutes is not)" >&2; exit 2 ;; esac
# Debian's python3 first: a pyenv shim on PATH may have no version set.
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "open-window.sh edits $data with python3, which is not installed (apt-get install -y python3)." >&2
  echo "A change ticket needs no python3 and lets alice write too:" >&2
  echo "  $root/bin/interlock ticket open --config $here/run/config.yaml --user alice --target plc1 --access write --for 1h --reason CHG-1234" >&2
  exit 1
fi
"$python" - "$data" "$minutes" <<'PY'
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
