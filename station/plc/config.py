"""How the station reaches its PLC: port settings, timing, and the Modbus register map.

Validated on construction, so a bad setting fails when the station starts, not on the first part.

**Modbus register map** (0-based protocol addresses, all on one unit; defaults in brackets):

- ``part_id_address`` [holding 0, ``part_id_registers`` long]: the part id, in one of two formats:
  ``u32`` [default] is the decimal number at the end of the id ("P-000123" -> 123, "42" -> 42) in two
  registers, high word first; ``ascii`` is the last ``2 * part_id_registers`` characters of the id, two per
  register, first character in the high byte, NUL-padded at the end. Either way the PLC sees a reduced id
  (ids that differ only elsewhere collide), so pick the format the PLC's part tracking uses. A part id the
  format cannot represent (no trailing digits, above 2**32 - 1) is never sent: the part fails safe.
- ``reason_address`` [holding 2]: the reason code (`station.plc.base.REASON_CODES`; 0 = the model's verdict).
- ``verdict`` / ``verdict_address`` [coil 0]: coil ON = accept, OFF = reject; or with ``verdict="register"`` a
  holding register holding ``ACCEPT_VALUE`` (1) or ``REJECT_VALUE`` (2), so an untouched 0 is never an accept.
- ``sequence_address`` [holding 3]: the "new result" strobe, written last. It changes with every verdict
  (1..65535, wrapping, never 0) and stays the same when one verdict is resent, so the PLC latches the record
  when the value changes and a retry can never count twice. The link reads it back on connecting and goes on
  from there, so a restarted station never repeats the PLC's current value.
- ``heartbeat_address`` [holding 4, or none]: a counter the link writes every ``heartbeat_s`` for the PLC's
  watchdog.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ACCEPT_VALUE = 1  # verdict register value for accept
REJECT_VALUE = 2  # verdict register value for reject (0 = nothing written since power-up, also a reject)
_U32_MAX = 2**32 - 1


class ModbusMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: int = Field(1, ge=1, le=247, description="The PLC's RTU slave address.")
    verdict: Literal["coil", "register"] = Field("coil", description="Accept as a coil or a register value.")
    verdict_address: int = Field(0, ge=0, le=65535, description="Coil, or holding register, of the verdict.")
    part_id_address: int = Field(0, ge=0, le=65535, description="First holding register of the part id.")
    part_id_format: Literal["u32", "ascii"] = Field("u32", description="How the part id maps to registers.")
    part_id_registers: int = Field(2, ge=1, le=32, description="Registers of the part id (u32: exactly 2).")
    reason_address: int = Field(2, ge=0, le=65535, description="Holding register of the reason code.")
    sequence_address: int = Field(3, ge=0, le=65535, description="Holding register of the new-result strobe.")
    heartbeat_address: int | None = Field(
        4, ge=0, le=65535, description="Holding register of the heartbeat counter; None for no heartbeat."
    )

    @model_validator(mode="after")
    def _layout(self) -> ModbusMap:
        if self.part_id_format == "u32" and self.part_id_registers != 2:
            raise ValueError("part_id_format 'u32' takes exactly 2 registers (part_id_registers: 2)")
        if self.part_id_address + self.part_id_registers > 65536:
            raise ValueError("the part id registers run past address 65535")
        owners: dict[int, str] = {}
        for name, addresses in self.holding_registers().items():
            for address in addresses:
                if address in owners:
                    raise ValueError(f"{name} and {owners[address]} both use holding register {address}")
                owners[address] = name
        return self

    def holding_registers(self) -> dict[str, range]:
        """Every holding register the map uses, by field."""
        used = {
            "part id": range(self.part_id_address, self.part_id_address + self.part_id_registers),
            "reason": range(self.reason_address, self.reason_address + 1),
            "sequence": range(self.sequence_address, self.sequence_address + 1),
        }
        if self.verdict == "register":
            used["verdict"] = range(self.verdict_address, self.verdict_address + 1)
        if self.heartbeat_address is not None:
            used["heartbeat"] = range(self.heartbeat_address, self.heartbeat_address + 1)
        return used

    def encode_part_id(self, part_id: str) -> list[int]:
        """The part id's registers; ValueError when this format cannot represent it."""
        if self.part_id_format == "u32":
            digits = re.search(r"[0-9]+$", part_id)
            if digits is None:
                raise ValueError(f"part id {part_id!r} has no trailing number for the u32 format")
            number = int(digits.group())
            if number > _U32_MAX:
                raise ValueError(f"part id {part_id!r}: {number} does not fit 32 bits")
            return [number >> 16, number & 0xFFFF]
        width = 2 * self.part_id_registers
        raw = part_id[-width:].encode("ascii").ljust(width, b"\0")
        return [raw[i] << 8 | raw[i + 1] for i in range(0, width, 2)]

    def decode_part_id(self, words: list[int]) -> str:
        """The id as the PLC sees it (the inverse of `encode_part_id` up to the format's reduction)."""
        if self.part_id_format == "u32":
            return str(words[0] << 16 | words[1])
        raw = b"".join(w.to_bytes(2, "big") for w in words)
        return raw.rstrip(b"\0").decode("ascii", errors="replace")


class PlcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["ascii", "modbus"] = Field(
        "ascii", description="ASCII line protocol (station.plc.ascii_link) or Modbus RTU."
    )
    port: str = Field(
        "/dev/ttyUSB0",
        min_length=1,
        description="Device path or pyserial URL (loop://, socket://host:port, a pty or a symlink to one).",
    )
    baudrate: int = Field(115200, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 1.5, 2] = 1
    write_timeout_s: float = Field(
        0.1, gt=0, description="A write blocked this long means the port is stuck: close and reconnect."
    )
    ack_timeout_s: float = Field(
        0.1,
        gt=0,
        description="Wait for the PLC's answer per attempt before resending. USB-serial adapters add ~16 ms "
        "each way; at low baud rates allow for the line time of a verdict and its ACK.",
    )
    default_deadline_s: float = Field(
        1.0, gt=0, description="Delivery window for a verdict that carries no deadline of its own."
    )
    heartbeat_s: float = Field(1.0, gt=0, description="Heartbeat period.")
    reconnect_backoff_s: tuple[float, float] = Field(
        (0.05, 2.0), description="First and longest wait between reconnect attempts (doubling in between)."
    )
    modbus: ModbusMap = Field(default_factory=ModbusMap)

    @model_validator(mode="after")
    def _backoff(self) -> PlcConfig:
        first, longest = self.reconnect_backoff_s
        if not 0 < first <= longest:
            raise ValueError(f"reconnect_backoff_s {self.reconnect_backoff_s}: need 0 < initial <= max")
        return self
