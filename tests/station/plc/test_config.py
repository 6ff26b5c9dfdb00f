from __future__ import annotations

import pytest
from pydantic import ValidationError

from station.plc import open_link
from station.plc.ascii_link import AsciiLink
from station.plc.base import clean_part_id
from station.plc.config import ModbusMap, PlcConfig
from station.plc.modbus_link import ModbusLink


def test_defaults_are_valid_and_frozen() -> None:
    config = PlcConfig()
    assert config.protocol == "ascii" and config.modbus.unit_id == 1
    with pytest.raises(ValidationError):
        config.port = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"protocol": "profinet"}, "protocol"),
        ({"port": ""}, "port"),
        ({"ack_timeout_s": 0}, "ack_timeout_s"),
        ({"parity": "X"}, "parity"),
        ({"reconnect_backoff_s": (2.0, 1.0)}, "initial <= max"),
        ({"modbus": {"unit_id": 0}}, "unit_id"),
        ({"modbus": {"part_id_registers": 3}}, "exactly 2 registers"),
        ({"modbus": {"reason_address": 1}}, "reason and part id both use holding register 1"),
        ({"modbus": {"verdict": "register"}}, "verdict and part id both use holding register 0"),
        ({"modbus": {"part_id_format": "ascii", "part_id_registers": 8}}, "both use holding register 2"),
        ({"modbus": {"part_id_address": 65535}}, "past address 65535"),
        ({"modbus": {"coil": 3}}, "coil"),
    ],
)
def test_bad_settings_fail_on_construction_with_a_clear_message(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlcConfig(**settings)


def test_u32_part_ids_are_the_trailing_number_high_word_first() -> None:
    modbus = ModbusMap()
    assert modbus.encode_part_id("P-000123") == [0, 123]
    assert modbus.encode_part_id("4294967295") == [0xFFFF, 0xFFFF]
    assert modbus.encode_part_id("line2-70000") == [1, 70000 - 65536]
    assert modbus.decode_part_id([1, 4464]) == "70000"
    for bad in ("P-", "4294967296"):
        with pytest.raises(ValueError):
            modbus.encode_part_id(bad)


def test_ascii_part_ids_are_the_last_characters_two_per_register() -> None:
    modbus = ModbusMap(part_id_format="ascii", part_id_registers=3, reason_address=10, sequence_address=11)
    assert modbus.encode_part_id("AB") == [0x4142, 0, 0]
    assert modbus.encode_part_id("XYZ-12345") == [0x2D31, 0x3233, 0x3435]  # "-1", "23", "45"
    assert modbus.decode_part_id(modbus.encode_part_id("XYZ-12345")) == "-12345"
    assert modbus.decode_part_id(modbus.encode_part_id("AB")) == "AB"


def test_part_ids_travel_unchanged_or_not_at_all() -> None:
    assert clean_part_id("  P-1 ") == "P-1"
    assert clean_part_id("lot 7/part 3") == "lot 7/part 3"
    for bad in ("", "   ", "a,b", "a\nb", "a\rb", "tab\there", "naïve", "x" * 65):
        with pytest.raises(ValueError):
            clean_part_id(bad)


def test_open_link_picks_the_protocol() -> None:
    for protocol, kind in (("ascii", AsciiLink), ("modbus", ModbusLink)):
        with open_link(PlcConfig(protocol=protocol, port="loop://", heartbeat_s=60)) as link:
            assert isinstance(link, kind)
