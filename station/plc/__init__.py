"""PLC output: the ASCII line protocol over serial and Modbus RTU."""
