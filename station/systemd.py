"""systemd's notify protocol without a dependency: READY, STOPPING and watchdog pings over NOTIFY_SOCKET.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon calls them unconditionally.
"""

from __future__ import annotations

import os
import socket
import time


def notify(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


class Watchdog:
    """Pings systemd at half the configured WatchdogSec, from a loop that proves the station is alive."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        self._period = int(usec) / 2e6 if usec and usec.isdigit() else None
        self._last = 0.0

    def ping(self) -> None:
        if self._period is None:
            return
        now = time.monotonic()
        if now - self._last >= self._period:
            notify("WATCHDOG=1")
            self._last = now
