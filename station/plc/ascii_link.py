"""The ASCII line protocol over a serial port (`station.plc.wire` has the line formats).

Fail-safe default: the PLC rejects every part for which it has not taken an ACCEPT, so anything that goes
wrong here (no ACK, port gone, invalid part id) costs that part, never passes it. A delivery is "acked" only
when a ``K,<part_id>`` line naming exactly this part came back: an ACK for any other id (a previous part's
late ACK, a duplicate, noise) is ignored and counted in ``ignored_acks``.

Each attempt writes ``V,<part_id>,<A|R>,<reason>`` and reads for ``ack_timeout_s``; without the ACK it writes
the same line again, until the part's deadline. The PLC must therefore treat a repeated verdict for a part it
already has as the same verdict (idempotent), and answers each copy.

Heartbeat: ``H,<seq>`` every ``heartbeat_s`` from a background thread, so the PLC can stop trusting the
station when they stop (a watchdog on its side). The PLC may echo them; echoes are counted
(``heartbeat_replies``) but never required, because many PLC programs only listen. The heartbeat thread also
reads whatever arrived while no delivery was waiting, and keeps reopening a lost port while the line is idle.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import serial

from station.plc.base import PlcVerdict, clean_part_id
from station.plc.config import PlcConfig
from station.plc.link import PortError, SerialLink
from station.plc.wire import (
    AckLine,
    HeartbeatLine,
    LineSplitter,
    encode_heartbeat,
    encode_verdict,
    parse_line,
)

log = logging.getLogger(__name__)

_READ_POLL_S = 0.01  # fixed read timeout: changing a pyserial timeout per call costs a tcsetattr each time
_MAX_REASON = 65535


@dataclass(frozen=True)
class _Line:
    part_id: str
    data: bytes


class AsciiLink(SerialLink[_Line]):
    extra_counters = ("ignored_acks", "heartbeat_replies", "unexpected_lines")

    def __init__(self, config: PlcConfig) -> None:
        self._port: serial.SerialBase | None = None
        self._lines = LineSplitter()
        self._heartbeat_seq = 0
        super().__init__(config)

    def _open(self) -> None:
        try:
            self._port = serial.serial_for_url(
                self.config.port,
                baudrate=self.config.baudrate,
                bytesize=self.config.bytesize,
                parity=self.config.parity,
                stopbits=self.config.stopbits,
                timeout=min(_READ_POLL_S, self.config.ack_timeout_s),
                write_timeout=self.config.write_timeout_s,
                exclusive=True,
            )
        except (
            Exception
        ) as exc:  # pyserial raises OSError, ValueError, termios.error, ... depending on the URL
            raise PortError(f"{type(exc).__name__}: {exc}") from exc
        self._lines = LineSplitter()  # a partial line from before the outage is gone for good

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # closing a vanished device may fail; it is gone either way
                log.debug("closing the PLC port failed", exc_info=True)
        self._port = None

    def _is_open(self) -> bool:
        return self._port is not None

    def _encode(self, verdict: PlcVerdict) -> _Line:
        part_id = clean_part_id(verdict.part_id)
        if not 0 <= verdict.reason_code <= _MAX_REASON:
            raise ValueError(f"reason code {verdict.reason_code} outside 0-{_MAX_REASON}")
        return _Line(part_id, encode_verdict(part_id, verdict.accept, verdict.reason_code))

    def _write(self, data: bytes) -> None:
        assert self._port is not None
        try:
            self._port.write(data)
        except OSError as exc:  # SerialException and SerialTimeoutException included
            raise PortError(f"write failed: {exc}") from exc

    def _send(self, message: _Line, until: float) -> None:
        self._write(message.data)

    def _await_confirmation(self, until: float) -> None:
        while self._confirmed_ts is None and time.time() < until:
            self._read(block=True)

    def _beat(self) -> bool:
        self._write(encode_heartbeat(self._heartbeat_seq))
        self._heartbeat_seq = (self._heartbeat_seq + 1) % 65536
        self._read(block=False)
        return True

    def _read(self, *, block: bool) -> None:
        """Read what is there (waiting up to the poll interval for a first byte when ``block``) and act on
        every complete line."""
        assert self._port is not None
        try:
            waiting = self._port.in_waiting
            data = self._port.read(waiting or 1) if waiting or block else b""
        except OSError as exc:
            raise PortError(f"read failed: {exc}") from exc
        for raw in self._lines.feed(data):
            self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        line = parse_line(raw)
        if isinstance(line, AckLine):
            pending = self._pending
            if pending is not None and line.part_id == pending.part_id and self._confirmed_ts is None:
                self._confirmed_ts = time.time()
            else:
                self._count("ignored_acks")
                log.debug("ignored ACK for part %s", line.part_id)
        elif isinstance(line, HeartbeatLine):
            self._count("heartbeat_replies")
        else:
            self._count("unexpected_lines")
            log.debug("unexpected line from the PLC: %r", raw)
