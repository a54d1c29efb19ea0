"""A pymodbus Modbus/TCP Security server (TLS, MBAP inside) standing in for
a PLC in the tls:// upstream tests.

usage: /usr/bin/python3 pymodbus_tls_server.py PORT CERT KEY CLIENT_CA [ADDR=VALUE ...]
It requires a client certificate issued by CLIENT_CA ("none": it asks for
none). Holding registers hold the given values (0-based addresses); every
unit id is served by the same data.
"""
import logging
import ssl
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.server import StartTlsServer

logging.basicConfig(level=logging.WARNING)

port, cert, key, client_ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
values = [0] * 1000
for kv in sys.argv[5:]:
    addr, val = kv.split("=")
    values[int(addr)] = int(val)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(certfile=cert, keyfile=key)
if client_ca != "none":
    ctx.load_verify_locations(cafile=client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED

slave = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 1000),
    co=ModbusSequentialDataBlock(0, [0] * 1000),
    hr=ModbusSequentialDataBlock(0, values),
    ir=ModbusSequentialDataBlock(0, values),
    zero_mode=True,
)
context = ModbusServerContext(slaves=slave, single=True)
# MB-TCP-Security carries the MBAP header inside TLS; pymodbus's default
# TLS framer leaves it out. A PLC restarted on its port finds the gateway's
# last connection in TIME_WAIT there.
StartTlsServer(context=context, address=("127.0.0.1", port), sslctx=ctx, framer=ModbusSocketFramer,
               allow_reuse_address=True)
