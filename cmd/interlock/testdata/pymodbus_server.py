"""A pymodbus TCP server standing in for a PLC in the end-to-end tests.

usage: /usr/bin/python3 pymodbus_server.py PORT [ADDR=VALUE ...]
Holding registers and input registers hold the given values (0-based
addresses); every unit id is served by the same data.
"""
import logging
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartTcpServer

logging.basicConfig(level=logging.WARNING)

port = int(sys.argv[1])
values = [0] * 1000
for kv in sys.argv[2:]:
    addr, val = kv.split("=")
    values[int(addr)] = int(val)

slave = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 1000),
    co=ModbusSequentialDataBlock(0, [0] * 1000),
    hr=ModbusSequentialDataBlock(0, values),
    ir=ModbusSequentialDataBlock(0, values),
    zero_mode=True,
)
context = ModbusServerContext(slaves=slave, single=True)
StartTcpServer(context=context, address=("127.0.0.1", port))
