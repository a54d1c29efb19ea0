"""A pymodbus TCP client for the end-to-end tests. Prints one JSON object.

usage: /usr/bin/python3 pymodbus_client.py PORT UNIT read ADDR COUNT
       /usr/bin/python3 pymodbus_client.py PORT UNIT write ADDR VALUE...
       /usr/bin/python3 pymodbus_client.py PORT UNIT coils ADDR VALUE...   (0/1)
       /usr/bin/python3 pymodbus_client.py PORT UNIT read_coils ADDR COUNT
The environment variable SOURCE_ADDRESS, when set, is the local address to
connect from (such as 127.0.0.2: another workstation on the loopback).
Output: {"registers": [...]} or {"bits": [...]} on success,
{"exception": CODE, "error": "..."} for a Modbus exception, {"error": "..."}
otherwise.
"""
import json
import logging
import os
import sys

from pymodbus.client import ModbusTcpClient

logging.basicConfig(level=logging.CRITICAL)

port, unit, op, addr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
args = [int(a) for a in sys.argv[5:]]
source = os.environ.get("SOURCE_ADDRESS")
client = ModbusTcpClient(
    "127.0.0.1",
    port=port,
    timeout=3,
    retries=0,
    source_address=(source, 0) if source else None,
)
if not client.connect():
    print(json.dumps({"error": "connect"}))
    sys.exit(1)
if op == "read":
    rr = client.read_holding_registers(addr, args[0], slave=unit)
elif op == "write":
    rr = client.write_registers(addr, args, slave=unit)
elif op == "coils":
    rr = client.write_coils(addr, [bool(a) for a in args], slave=unit)
elif op == "read_coils":
    rr = client.read_coils(addr, args[0], slave=unit)
else:
    raise SystemExit("unknown op " + op)
client.close()
out = {}
if rr is None:
    out["error"] = "no response"
elif rr.isError():
    out["exception"] = getattr(rr, "exception_code", None)
    out["error"] = str(rr)
else:
    out["registers"] = getattr(rr, "registers", None)
    if op == "read_coils":
        out["bits"] = [int(b) for b in rr.bits[: args[0]]]
print(json.dumps(out))
