"""A serial port with a plug to pull: stands in for ``serial.serial_for_url`` and wraps the real port.

While unplugged, opening fails the way pyserial fails on a missing device, and a port opened before fails on
every read and write the way a pulled USB adapter does (EIO). ``stall_writes`` makes writes time out instead,
as a port whose other end stopped reading (flow control, a wedged adapter) does.
"""

from __future__ import annotations

import time
from typing import Any

import serial

_real_serial_for_url = serial.serial_for_url  # kept: tests patch the module attribute with this mock


class FlakySerial:
    def __init__(self) -> None:
        self.plugged = True
        self.stall_writes = False
        self.opens = 0  # successful opens

    def serial_for_url(self, url: str, **kwargs: Any) -> _FlakyPort:
        if not self.plugged:
            raise serial.SerialException(f"[Errno 2] could not open port {url}: No such file or directory")
        self.opens += 1
        return _FlakyPort(self, _real_serial_for_url(url, **kwargs))

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        self.plugged = True


class _FlakyPort:
    def __init__(self, plug: FlakySerial, port: serial.SerialBase) -> None:
        self._plug = plug
        self._port = port

    def _check(self) -> None:
        if not self._plug.plugged:
            raise serial.SerialException("[Errno 5] Input/output error")

    @property
    def in_waiting(self) -> int:
        self._check()
        return self._port.in_waiting

    def read(self, size: int = 1) -> bytes:
        self._check()
        return self._port.read(size)

    def write(self, data: bytes) -> int | None:
        self._check()
        if self._plug.stall_writes:
            time.sleep(self._port.write_timeout or 0)
            raise serial.SerialTimeoutException("Write timeout")
        return self._port.write(data)

    def close(self) -> None:
        self._port.close()
