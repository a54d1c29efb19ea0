"""A pymodbus device speaking Modbus RTU framing, for the RTU upstream tests.

usage: /usr/bin/python3 pymodbus_rtu_server.py tcp PORT        (RTU over TCP)
       /usr/bin/python3 pymodbus_rtu_server.py serial DEVICE   (19200 8N1: a pty refuses parity)
Holding registers 0..99 hold 1000 + address; unit id 1.
"""
import logging
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.server import StartSerialServer, StartTcpServer

logging.basicConfig(level=logging.WARNING)

slave = ModbusSlaveContext(
    hr=ModbusSequentialDataBlock(0, [1000 + i for i in range(100)]),
    zero_mode=True,
)
context = ModbusServerContext(slaves={1: slave}, single=False)
mode, where = sys.argv[1], sys.argv[2]
if mode == "tcp":
    StartTcpServer(context=context, address=("127.0.0.1", int(where)), framer=ModbusRtuFramer)
else:
    StartSerialServer(
        context=context, framer=ModbusRtuFramer, port=where,
        baudrate=19200, bytesize=8, parity="N", stopbits=1, timeout=0.05,
    )
