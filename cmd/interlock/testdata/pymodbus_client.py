"""A pymodbus TCP client for the end-to-end tests. Prints one JSON object.

usage: /usr/bin/python3 pymodbus_client.py PORT UNIT read ADDR COUNT
       /usr/bin/python3 pymodbus_client.py PORT UNIT write ADDR VALUE...
       /usr/bin/python3 pymodbus_client.py PORT UNIT coils ADDR VALUE...   (0/1)
       /usr/bin/python3 pymodbus_client.py PORT UNIT read_coils ADDR COUNT
The environment variable SOURCE_ADDRESS, when set, is the local address to
connect from (such as 127.0.0.2: another workstation on the loopback).
With TLS_CA set the client speaks Modbus/TCP Security (AsyncModbusTlsClient):
TLS_CA is the CA file that verifies the gateway, TLS_CERT and TLS_KEY the
client's certificate and key (none when unset). The MBAP header stays, as
the Modbus/TCP Security specification has it (pymodbus's own TLS framer
drops it).
Output: {"registers": [...]} or {"bits": [...]} on success,
{"exception": CODE, "error": "..."} for a Modbus exception, {"error": "..."}
otherwise.
"""
import asyncio
import json
import logging
import os
import ssl
import sys

from pymodbus.client import AsyncModbusTlsClient, ModbusTcpClient
from pymodbus.framer.socket_framer import ModbusSocketFramer

logging.basicConfig(level=logging.CRITICAL)

port, unit, op, addr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
args = [int(a) for a in sys.argv[5:]]
source = os.environ.get("SOURCE_ADDRESS")
kwargs = dict(port=port, timeout=3, retries=0, source_address=(source, 0) if source else None)


def call(client):
    if op == "read":
        return client.read_holding_registers(addr, args[0], slave=unit)
    if op == "write":
        return client.write_registers(addr, args, slave=unit)
    if op == "coils":
        return client.write_coils(addr, [bool(a) for a in args], slave=unit)
    if op == "read_coils":
        return client.read_coils(addr, args[0], slave=unit)
    raise SystemExit("unknown op " + op)


async def call_tls():
    # The asyncio client: pymodbus 3.0.0's synchronous one waits in
    # select() for TLS bytes OpenSSL has already read, and loses answers.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=os.environ["TLS_CA"])
    if os.environ.get("TLS_CERT"):
        ctx.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    client = AsyncModbusTlsClient(
        "127.0.0.1", sslctx=ctx, framer=ModbusSocketFramer, server_hostname="127.0.0.1", **kwargs
    )
    await client.connect()
    if not client.connected:
        return None, "connect"
    try:
        return await asyncio.wait_for(call(client), 5), None
    except Exception as e:  # pylint: disable=broad-except
        # TLS 1.3: a refused client certificate shows at the first read.
        return None, "%s: %s" % (type(e).__name__, e)
    finally:
        await client.close()


if os.environ.get("TLS_CA"):
    rr, err = asyncio.run(call_tls())
    if err:
        print(json.dumps({"error": err}))
        sys.exit(1)
else:
    client = ModbusTcpClient("127.0.0.1", **kwargs)
    if not client.connect():
        print(json.dumps({"error": "connect"}))
        sys.exit(1)
    rr = call(client)
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
