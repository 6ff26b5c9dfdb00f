"""A PLC on a pseudo-terminal, for tests, `indus demo` and commissioning a station without the line.

`PlcSimulator` opens a pty pair and plays the PLC on the master side; the station opens the slave side
(`device_path`, or a stable symlink to it with ``link``) exactly as it would open a USB adapter. It speaks
either protocol:

- ``ascii``: reads ``V`` lines, answers ``K,<part_id>`` (after ``ack_delay_s``), echoes heartbeats.
- ``modbus``: pymodbus's own RTU serial server and datastore, on a second pty bridged to the station's, with
  the register map of `station.plc.config.ModbusMap`; a record is taken when the sequence register changes,
  as a PLC program would latch it. (The bridge exists because the server needs a device path to open and
  the station needs another; the relay in between is also where line faults are injected.)

A verdict counts as taken by the PLC when the simulator acknowledges it (sends the ACK, or answers the
sequence write). Faults for tests: ``drop_rate`` loses that fraction of incoming verdict lines (Modbus:
request and response frames) on the wire; ``ack_delay_s`` holds every ACK (Modbus: response) back; `mute`
puts the PLC in STOP for a while (it reads nothing and answers nothing); `unplug` / `replug` make the
station's device vanish and come back (at the same ``link`` path).

Given the ground truth (a JSON-lines file of ``{"part_id", "label": "good"|"defective", "defect"}``, or a
dict of part id to label), `summary` scores what the PLC took: false accepts, false rejects, parts never
taken (the line rejects them), duplicates, unknown parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import queue
import random
import select
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from station.plc.base import clean_part_id
from station.plc.config import ACCEPT_VALUE, ModbusMap
from station.plc.wire import (
    HeartbeatLine,
    LineSplitter,
    VerdictLine,
    encode_ack,
    encode_heartbeat,
    parse_line,
)

log = logging.getLogger(__name__)

Label = Literal["good", "defective"]
_LABELS = ("good", "defective")
_READ_SIZE = 4096


def load_truth(source: str | Path | Mapping[str, str]) -> dict[str, Label]:
    """Part id -> label, from a dict or a JSON-lines file; ValueError naming the line for anything else."""
    if isinstance(source, Mapping):
        rows = [
            (f"part {part_id!r}", {"part_id": part_id, "label": label}) for part_id, label in source.items()
        ]
    else:
        path = Path(source)
        rows = []
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if text.strip():
                try:
                    rows.append((f"{path}:{number}", json.loads(text)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from exc
    truth: dict[str, Label] = {}
    for where, row in rows:
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("part_id"), str)
            or row.get("label") not in _LABELS
        ):
            raise ValueError(f"{where}: need a part_id string and a label 'good' or 'defective'")
        truth[row["part_id"]] = row["label"]
    return truth


@dataclass(frozen=True)
class TakenVerdict:
    """A verdict the PLC acknowledged, as the PLC saw it (Modbus: the id reduced by the register map)."""

    part_id: str
    accept: bool
    reason_code: int
    ts: float  # time.time() when taken


class _Pty:
    """One pty pair in raw mode. The simulator keeps the slave open too, so the master never reads EIO
    while no station has the device open."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PlcSimulator:
    def __init__(
        self,
        protocol: Literal["ascii", "modbus"] = "ascii",
        *,
        truth: str | Path | Mapping[str, str] | None = None,
        link: str | Path | None = None,
        ack_delay_s: float = 0.0,
        drop_rate: float = 0.0,
        answer_heartbeats: bool = True,
        modbus: ModbusMap | None = None,
        seed: int | None = None,
    ) -> None:
        if protocol not in ("ascii", "modbus"):
            raise ValueError(f"protocol {protocol!r}: 'ascii' or 'modbus'")
        if ack_delay_s < 0 or not 0 <= drop_rate <= 1:
            raise ValueError("need ack_delay_s >= 0 and 0 <= drop_rate <= 1")
        self.protocol = protocol
        self.modbus = modbus or ModbusMap()
        self._truth = {
            self._as_plc_sees(part_id): label for part_id, label in load_truth(truth or {}).items()
        }
        self._has_truth = truth is not None
        self._link = Path(link) if link is not None else None
        self._ack_delay_s = ack_delay_s
        self._drop_rate = drop_rate
        self._answer_heartbeats = answer_heartbeats
        self._random = random.Random(seed)

        self._lock = threading.Lock()  # the tally: written by the I/O thread and the Modbus server's loop
        self._taken: list[TakenVerdict] = []
        self._heartbeats: list[float] = []
        self._events: Counter[str] = Counter()  # dropped, ignored_muted, garbage_lines
        self._muted_until = 0.0

        self._station: _Pty | None = None
        self._lines = LineSplitter()
        self._outbox: list[tuple[float, int, bytes]] = []  # (due monotonic, order, bytes to the station)
        self._order = 0
        self._commands: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        self._wake: tuple[int, int] | None = None  # a pipe that wakes the I/O thread; open while started
        self._thread = threading.Thread(target=self._run, name="plc-simulator", daemon=True)
        self._server: _ModbusServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> PlcSimulator:
        try:
            if self.protocol == "modbus":
                self._server = _ModbusServer(self.modbus, self._take, self._heartbeat)
            self._plug()
        except BaseException:
            self.close()
            raise
        self._wake = os.pipe()
        self._thread.start()
        return self

    def close(self) -> None:
        """Idempotent: stops the I/O thread and the server, removes the pty and the link."""
        if self._wake is not None:
            wake, self._wake = self._wake, None
            os.write(wake[1], b"x")  # with _wake cleared, the I/O thread ends its loop
            self._thread.join(timeout=2.0)
            for fd in wake:
                os.close(fd)
        if self._server is not None:
            self._server.close()
            self._server = None
        self._unplug()

    def __enter__(self) -> PlcSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def device_path(self) -> str:
        """What the station's ``port`` should be: the link when there is one, else the pty itself."""
        if self._link is not None:
            return str(self._link)
        if self._station is None:
            raise RuntimeError("the simulator is unplugged or not started")
        return self._station.path

    # -- faults --------------------------------------------------------------------------------------

    def mute(self, seconds: float) -> None:
        """PLC in STOP for ``seconds``: nothing read is acted on, nothing is answered."""
        self._muted_until = time.monotonic() + seconds

    def unplug(self) -> None:
        """The station's device disappears (the station's open port fails, the path vanishes)."""
        self._in_io_thread(self._unplug)

    def replug(self) -> None:
        """A new device appears at the same ``link`` path."""
        self._in_io_thread(self._plug)

    def _in_io_thread(self, action: Callable[[], None]) -> None:
        if self._wake is None:
            raise RuntimeError("the simulator is not running")
        done = threading.Event()
        self._commands.put((action, done))
        os.write(self._wake[1], b"x")
        if not done.wait(timeout=2.0):
            raise RuntimeError("the simulator's I/O thread did not respond")

    def _plug(self) -> None:
        self._station = _Pty()
        self._lines = LineSplitter()
        self._outbox.clear()
        if self._link is not None:
            if self._link.exists() and not self._link.is_symlink():
                raise FileExistsError(f"{self._link} exists and is not a symlink: not replacing it")
            staging = self._link.with_name(f".{self._link.name}.{os.getpid()}")
            staging.unlink(missing_ok=True)
            staging.symlink_to(self._station.path)
            staging.replace(self._link)  # atomic: the station never sees a missing link while plugged

    def _unplug(self) -> None:
        if self._station is None:
            return
        if (
            self._link is not None
            and self._link.is_symlink()
            and os.readlink(self._link) == self._station.path
        ):
            self._link.unlink()
        self._station.close()
        self._station = None

    # -- what the PLC saw ----------------------------------------------------------------------------

    @property
    def verdicts(self) -> list[TakenVerdict]:
        with self._lock:
            return list(self._taken)

    @property
    def heartbeat_times(self) -> list[float]:
        """time.time() of every heartbeat received."""
        with self._lock:
            return list(self._heartbeats)

    def read_holding_registers(self, address: int, count: int = 1) -> list[int]:
        """The Modbus simulator's holding registers, as a PLC program would read them."""
        return [int(v) for v in self._modbus_server().read(3, address, count)]

    def read_coils(self, address: int, count: int = 1) -> list[bool]:
        return [bool(v) for v in self._modbus_server().read(1, address, count)]

    def _modbus_server(self) -> _ModbusServer:
        if self._server is None:
            raise RuntimeError("only a started Modbus simulator has registers")
        return self._server

    def summary(self) -> dict[str, Any]:
        with self._lock:
            taken = list(self._taken)
            events = dict(self._events)
            heartbeats = len(self._heartbeats)
        by_part: dict[str, list[TakenVerdict]] = {}
        for verdict in taken:
            by_part.setdefault(verdict.part_id, []).append(verdict)
        decision = {part_id: verdicts[0].accept for part_id, verdicts in by_part.items()}
        reasons = Counter(str(v[0].reason_code) for v in by_part.values() if not v[0].accept)
        result: dict[str, Any] = {
            "protocol": self.protocol,
            "verdicts": len(taken),
            "parts": len(by_part),
            "accepted": sum(decision.values()),
            "rejected": len(decision) - sum(decision.values()),
            "reject_reasons": dict(sorted(reasons.items())),
            "duplicates": sum(len(v) > 1 for v in by_part.values()),
            "conflicting": sum(len({x.accept for x in v}) > 1 for v in by_part.values()),
            "heartbeats": heartbeats,
            "dropped": events.get("dropped", 0),
            "ignored_muted": events.get("ignored_muted", 0),
            "garbage_lines": events.get("garbage_lines", 0),
        }
        if self._has_truth:
            labels = {part_id: self._truth.get(part_id) for part_id in decision}
            result |= {
                "false_accepts": sum(decision[p] and labels[p] == "defective" for p in decision),
                "false_rejects": sum(not decision[p] and labels[p] == "good" for p in decision),
                "unknown": sum(label is None for label in labels.values()),
                "missing": sum(part_id not in decision for part_id in self._truth),
            }
        return result

    def _as_plc_sees(self, part_id: str) -> str:
        clean = clean_part_id(part_id)
        if self.protocol == "ascii":
            return clean
        return self.modbus.decode_part_id(self.modbus.encode_part_id(clean))

    def _muted(self) -> bool:
        return time.monotonic() < self._muted_until

    def _take(self, part_id: str, accept: bool, reason_code: int) -> None:
        with self._lock:
            self._taken.append(TakenVerdict(part_id, accept, reason_code, time.time()))

    def _heartbeat(self) -> None:
        with self._lock:
            self._heartbeats.append(time.time())

    def _event(self, name: str) -> None:
        with self._lock:
            self._events[name] += 1

    # -- the I/O thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._wake is not None
        wake_r = self._wake[0]
        while self._wake is not None:
            fds = [wake_r]
            if self._station is not None:
                fds.append(self._station.master)
            if self._server is not None:
                fds.append(self._server.pty.master)
            timeout = max(0.0, self._outbox[0][0] - time.monotonic()) if self._outbox else 0.5
            readable, _, _ = select.select(fds, [], [], timeout)  # fds change only in this thread
            if wake_r in readable:
                os.read(wake_r, _READ_SIZE)
                self._run_commands()
            station = self._station
            if station is not None and station.master in readable:
                self._from_station(self._read(station.master))
            if self._server is not None and self._server.pty.master in readable:
                self._from_server(self._read(self._server.pty.master))
            self._flush_outbox()

    def _run_commands(self) -> None:
        while True:
            try:
                action, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            finally:
                done.set()

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, _READ_SIZE)
        except (BlockingIOError, OSError):  # EIO while the other side is closed: nothing to read
            return b""

    def _to_station(self, data: bytes, delay_s: float) -> None:
        if data:
            heapq.heappush(self._outbox, (time.monotonic() + delay_s, self._order, data))
            self._order += 1

    def _flush_outbox(self) -> None:
        now = time.monotonic()
        while self._outbox and self._outbox[0][0] <= now:
            _, _, data = heapq.heappop(self._outbox)
            if self._station is None:
                continue  # unplugged: the answer is lost on the wire
            try:
                os.write(self._station.master, data)
            except OSError:  # the station is not reading and the pty buffer is full
                log.warning("PLC simulator: the station does not read; an answer was lost")

    def _lost(self) -> bool:
        """Whether the frame or line now arriving is lost on the wire (``drop_rate``)."""
        if self._drop_rate and self._random.random() < self._drop_rate:
            self._event("dropped")
            return True
        return False

    def _from_station(self, data: bytes) -> None:
        if not data:
            return
        if self.protocol == "ascii":
            for raw in self._lines.feed(data):
                self._on_line(raw)
        elif self._muted():
            self._event("ignored_muted")
        elif not self._lost():
            assert self._server is not None
            with contextlib.suppress(OSError):
                os.write(self._server.pty.master, data)

    def _from_server(self, data: bytes) -> None:
        """A response from pymodbus's server: delayed by ``ack_delay_s``, lost like requests are, so a PLC
        that took a record without the station hearing so is exercised too."""
        if data and not self._lost():
            self._to_station(data, self._ack_delay_s)

    def _on_line(self, raw: bytes) -> None:
        line = parse_line(raw)
        if isinstance(line, HeartbeatLine):
            self._heartbeat()
            if self._answer_heartbeats and not self._muted():
                self._to_station(encode_heartbeat(line.seq), 0.0)
        elif isinstance(line, VerdictLine):
            if self._muted():
                self._event("ignored_muted")
            elif not self._lost():
                self._take(line.part_id, line.accept, line.reason_code)
                self._to_station(encode_ack(line.part_id), self._ack_delay_s)
        else:  # garbage, or an ACK, which only a PLC sends
            self._event("garbage_lines")
            log.debug("PLC simulator: unexpected line %r", raw)


class _ModbusServer:
    """pymodbus's RTU serial server on its own pty, in an asyncio loop thread, watching the register map."""

    def __init__(
        self, modbus: ModbusMap, take: Callable[[str, bool, int], None], heartbeat: Callable[[], None]
    ) -> None:
        from pymodbus.server import ModbusSerialServer  # the ASCII simulator needs no pymodbus
        from pymodbus.simulator import DataType, SimData, SimDevice

        self.modbus = modbus
        self._take, self._heartbeat = take, heartbeat
        self.pty = _Pty()
        size = max(a for addresses in modbus.holding_registers().values() for a in addresses) + 1
        self._registers = [0] * size  # what the PLC program sees, updated on every write
        self._coil = False
        coils = modbus.verdict_address + 16 if modbus.verdict == "coil" else 16
        device = SimDevice(
            modbus.unit_id,
            simdata=(
                [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
                [SimData(0, count=1, values=False, datatype=DataType.BITS)],
                [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._loop = asyncio.new_event_loop()
        ready: queue.Queue[BaseException | None] = queue.Queue()

        async def serve() -> None:
            self._server = ModbusSerialServer(
                device, port=self.pty.path, baudrate=115200, ignore_missing_devices=True
            )
            await self._server.serve_forever(background=True)

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:  # reported to the constructor's thread
                ready.put(exc)
                return
            ready.put(None)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="plc-simulator-modbus", daemon=True)
        self._thread.start()
        error = ready.get(timeout=5.0)
        if error is not None:
            raise RuntimeError(f"the Modbus server did not start: {error}") from error

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> None:
        """Called by the server before every request: writes update the PLC program's view of the map."""
        if values is None:
            return
        if function_code in (5, 15):
            if address <= self.modbus.verdict_address < address + len(values):
                self._coil = bool(values[self.modbus.verdict_address - address])
            return
        old_seq = self._registers[self.modbus.sequence_address]
        for offset, value in enumerate(values):
            if address + offset < len(self._registers):
                self._registers[address + offset] = int(value)
        heartbeat = self.modbus.heartbeat_address
        if heartbeat is not None and address <= heartbeat < address + len(values):
            self._heartbeat()
        seq = self._registers[self.modbus.sequence_address]
        if seq != old_seq:
            self._latch()

    def _latch(self) -> None:
        modbus, regs = self.modbus, self._registers
        words = regs[modbus.part_id_address : modbus.part_id_address + modbus.part_id_registers]
        accept = self._coil if modbus.verdict == "coil" else regs[modbus.verdict_address] == ACCEPT_VALUE
        self._take(modbus.decode_part_id(words), accept, regs[modbus.reason_address])

    def read(self, function_code: int, address: int, count: int) -> list[int] | list[bool]:
        """Values straight from pymodbus's datastore (1: coils, 3: holding registers)."""
        values = asyncio.run_coroutine_threadsafe(
            self._server.context.async_getValues(self.modbus.unit_id, function_code, address, count),
            self._loop,
        ).result(timeout=2.0)
        if not isinstance(values, list):
            raise ValueError(f"the datastore refused function {function_code} at {address}+{count}: {values}")
        return values

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout=2.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2.0)
        self._loop.close()
        self.pty.close()
