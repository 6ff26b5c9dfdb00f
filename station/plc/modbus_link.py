"""Modbus RTU to the PLC through pymodbus's serial client (`station.plc.config` has the register map).

Fail-safe default: the PLC rejects every part for which it has not latched an ACCEPT record, so a verdict
that cannot be written in time costs that part, never passes it. A delivery is "acked" only when the PLC
answered every write of the record (function codes 16/5/6 echo what they wrote), the sequence strobe last.

One record per verdict, written in this order so the PLC never latches a half-written one: the part id,
reason (and verdict register, when the verdict is a register) in as few multi-register writes as the map
allows, then the accept coil, then the sequence register. The sequence value is chosen once per verdict, so a
retried record rewrites the same value and the PLC cannot latch it twice.

Every client call runs under a hard limit in a helper thread: upstream RTU framers have hung on unplugged
USB adapters, and a hung call would otherwise hold the station's PLC output forever. A call past its limit
abandons the client (closed, recreated on the next connect).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from station.plc.base import PlcVerdict, clean_part_id
from station.plc.config import ACCEPT_VALUE, REJECT_VALUE, PlcConfig
from station.plc.link import AttemptError, PortError, SerialLink

log = logging.getLogger(__name__)

_HUNG_MARGIN_S = 0.05  # beyond the call's own timeout and write time: the call is hung, not slow


@dataclass
class _Record:
    runs: list[tuple[int, list[int]]]  # (first address, values) of the holding registers, sequence excluded
    accept: bool
    seq: int | None = None  # chosen at the first write, kept for every retry


def register_runs(values: dict[int, int]) -> list[tuple[int, list[int]]]:
    """Group register values into runs of consecutive addresses: one write per run."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(values):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(values[address])
        else:
            runs.append((address, [values[address]]))
    return runs


def _run_with_limit(call: Callable[[], Any], limit_s: float) -> Any:
    """``call()``'s result or exception; TimeoutError when it is still running after ``limit_s``."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="plc-modbus-call", daemon=True)
    thread.start()
    thread.join(limit_s)
    if not outcome:
        raise TimeoutError(f"no return within {limit_s:.2f} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class _Client(ModbusSerialClient):
    """Once abandoned, never reopens the port: a hung call that returns late would otherwise reconnect
    inside pymodbus and hold the port's exclusive lock against the client that replaced it."""

    abandoned = False

    def connect(self) -> bool:
        return not self.abandoned and super().connect()


class ModbusLink(SerialLink[_Record]):
    extra_counters = ("error_responses",)

    def __init__(self, config: PlcConfig) -> None:
        self._client: _Client | None = None
        self._seq = 0  # last sequence value written (or read from the PLC on connecting)
        self._heartbeat_value = 0
        super().__init__(config)

    def _call(self, what: str, method: str, *args: Any, until: float, **kwargs: Any) -> Any:
        """One client request, bounded by ``until`` (time.time()); errors become PortError/AttemptError.

        A call past its own timeout plus the write time is hung: the client is abandoned (PortError)."""
        client = self._client
        assert client is not None
        # pymodbus reads this per request: the call itself gives up at the attempt's end
        client.comm_params.timeout_connect = max(until - time.time(), 0.001)
        limit_s = client.comm_params.timeout_connect + self.config.write_timeout_s + _HUNG_MARGIN_S
        try:
            response = _run_with_limit(
                lambda: getattr(client, method)(*args, device_id=self.config.modbus.unit_id, **kwargs),
                limit_s,
            )
        except TimeoutError as exc:
            raise PortError(f"{what}: client call hung ({exc}); abandoned") from exc
        except ConnectionException as exc:
            raise PortError(f"{what}: {exc}") from exc
        except ModbusIOException as exc:
            raise AttemptError(f"{what}: no answer from unit {self.config.modbus.unit_id}") from exc
        except ModbusException as exc:
            raise AttemptError(f"{what}: {exc}") from exc
        except OSError as exc:
            raise PortError(f"{what}: {exc}") from exc
        if response.isError():
            self._count("error_responses")
            raise AttemptError(f"{what}: the PLC refused: {response}")
        return response

    def _write(self, what: str, method: str, address: int, value: Any, echo: str, until: float) -> None:
        """A write confirmed only by a response echoing it: RTU frames carry no transaction id, so a late
        answer to an earlier request would otherwise pass for this one's."""
        response = self._call(what, method, address, value, until=until)
        expected = len(value) if isinstance(value, list) else [value]
        if response.address != address or getattr(response, echo) != expected:
            raise AttemptError(f"{what}: the answer does not match the request: {response}")

    def _open(self) -> None:
        cfg = self.config
        self._client = _Client(
            cfg.port,
            framer=FramerType.RTU,
            baudrate=cfg.baudrate,
            bytesize=cfg.bytesize,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            timeout=cfg.ack_timeout_s,
            retries=0,  # retries are the link's, bounded by the part's deadline
        )
        until = time.time() + cfg.ack_timeout_s
        try:
            connected = _run_with_limit(self._client.connect, cfg.ack_timeout_s + _HUNG_MARGIN_S)
        except TimeoutError as exc:
            raise PortError(f"connect hung ({exc})") from exc
        if not connected:
            raise PortError(f"cannot open {cfg.port}")
        address = cfg.modbus.sequence_address
        try:
            response = self._call("read sequence", "read_holding_registers", address, count=1, until=until)
        except AttemptError as exc:
            raise PortError(f"the PLC does not answer ({exc})") from exc
        self._seq = response.registers[0]

    def _close(self) -> None:
        if self._client is not None:
            self._client.abandoned = True
            try:
                self._client.close()
            except Exception:  # closing a vanished device may fail; it is gone either way
                log.debug("closing the Modbus client failed", exc_info=True)
        self._client = None

    def _is_open(self) -> bool:
        return self._client is not None

    def _encode(self, verdict: PlcVerdict) -> _Record:
        modbus = self.config.modbus
        if not 0 <= verdict.reason_code <= 0xFFFF:
            raise ValueError(f"reason code {verdict.reason_code} does not fit a register")
        words = modbus.encode_part_id(clean_part_id(verdict.part_id))
        values = dict(enumerate(words, start=modbus.part_id_address))
        values[modbus.reason_address] = verdict.reason_code
        if modbus.verdict == "register":
            values[modbus.verdict_address] = ACCEPT_VALUE if verdict.accept else REJECT_VALUE
        return _Record(register_runs(values), verdict.accept)

    def _send(self, message: _Record, until: float) -> None:
        modbus = self.config.modbus
        if message.seq is None:
            self._seq = message.seq = self._seq % 0xFFFF + 1  # 1..65535: 0 stays "nothing since power-up"
        for address, values in message.runs:
            self._write("write record", "write_registers", address, values, "count", until)
        if modbus.verdict == "coil":
            self._write("write verdict", "write_coil", modbus.verdict_address, message.accept, "bits", until)
        self._write(
            "write sequence", "write_register", modbus.sequence_address, message.seq, "registers", until
        )
        self._confirmed_ts = time.time()

    def _await_confirmation(self, until: float) -> None:
        """Nothing to wait for: the write responses in `_send` are the PLC's confirmation."""

    def _beat(self) -> bool:
        address = self.config.modbus.heartbeat_address
        if address is None:
            return False
        until = time.time() + self.config.ack_timeout_s
        self._write("write heartbeat", "write_register", address, self._heartbeat_value, "registers", until)
        self._heartbeat_value = (self._heartbeat_value + 1) % 65536
        return True
