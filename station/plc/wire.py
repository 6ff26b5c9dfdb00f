"""The ASCII line protocol, both directions, shared by the station's link and the PLC simulator.

Lines are ASCII, comma-separated, ended by CR LF (a bare LF is accepted on input)::

    station -> PLC   V,<part_id>,<A|R>,<reason_code>   a verdict: A accept, R reject; reason 0-65535
    PLC -> station   K,<part_id>                        the PLC has taken this part's verdict
    station -> PLC   H,<seq>                            heartbeat, seq 0-65535 wrapping, one per heartbeat_s
    PLC -> station   H,<seq>                            optional echo of a heartbeat (counted, never required)

Parsing is total: any bytes give a line object or None, never an exception, because the other end may be a
PLC mid-reboot, line noise, or the wrong device on the port.
"""

from __future__ import annotations

from dataclasses import dataclass

from station.plc.base import clean_part_id

MAX_LINE = 128  # longer than any valid line; a longer run without a line end is noise and is discarded
_MAX_NUMBER = 65535


@dataclass(frozen=True)
class VerdictLine:
    part_id: str
    accept: bool
    reason_code: int


@dataclass(frozen=True)
class AckLine:
    part_id: str


@dataclass(frozen=True)
class HeartbeatLine:
    seq: int


Line = VerdictLine | AckLine | HeartbeatLine


def encode_verdict(part_id: str, accept: bool, reason_code: int) -> bytes:
    return f"V,{part_id},{'A' if accept else 'R'},{reason_code}\r\n".encode("ascii")


def encode_ack(part_id: str) -> bytes:
    return f"K,{part_id}\r\n".encode("ascii")


def encode_heartbeat(seq: int) -> bytes:
    return f"H,{seq}\r\n".encode("ascii")


def _number(text: str) -> int | None:
    # str.isdigit would accept non-ASCII digits; the line is ASCII-decoded already, so this is exact
    if not text.isdigit() or len(text) > 5:
        return None
    value = int(text)
    return value if value <= _MAX_NUMBER else None


def _part_id(text: str) -> str | None:
    try:
        return text if clean_part_id(text) == text else None
    except ValueError:
        return None


def parse_line(raw: bytes) -> Line | None:
    """One line without its line end; None for anything that is not exactly a protocol line."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    match text.split(","):
        case ["K", part_id] if _part_id(part_id) is not None:
            return AckLine(part_id)
        case ["H", seq] if (number := _number(seq)) is not None:
            return HeartbeatLine(number)
        case ["V", part_id, "A" | "R" as decision, code] if _part_id(part_id) is not None and (
            (reason := _number(code)) is not None
        ):
            return VerdictLine(part_id, decision == "A", reason)
    return None


class LineSplitter:
    """Cuts a byte stream into lines, whatever the chunking; bounded memory whatever arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0  # bytes dropped as an overlong run without a line end

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines = []
        while (end := self._buffer.find(b"\n")) >= 0:
            lines.append(bytes(self._buffer[:end]).removesuffix(b"\r"))
            del self._buffer[: end + 1]
        if len(self._buffer) > MAX_LINE:
            self.discarded += len(self._buffer)
            self._buffer.clear()
        return lines
