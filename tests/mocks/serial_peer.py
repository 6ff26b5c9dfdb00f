"""A scripted device on the far end of a pty: for PLC behaviour the simulator deliberately never shows
(ACKs for the wrong part, silence, garbage)."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from collections.abc import Callable


class ScriptedPeer:
    """Calls ``answer(line)`` for every line the station writes (line end stripped) and writes back what it
    returns. ``path`` is the device the station opens."""

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self._answer = answer
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.lines: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not select.select([self._master], [], [], 0.05)[0]:
                continue
            try:
                buffer += os.read(self._master, 4096)
            except OSError:
                return
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                line = line.removesuffix(b"\r")
                self.lines.append(line)
                if reply := self._answer(line):
                    os.write(self._master, reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
