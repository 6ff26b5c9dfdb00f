from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusSerialClient

from station.plc.base import PlcVerdict
from station.plc.config import ACCEPT_VALUE, REJECT_VALUE, ModbusMap, PlcConfig
from station.plc.modbus_link import ModbusLink, register_runs
from station.plc.simulator import PlcSimulator

MakeConfig = Callable[..., PlcConfig]
# A delivery may overrun its deadline by one request in flight (ack_timeout_s = 0.05 here), plus scheduling.
OVERRUN_S = 0.05 + 0.15


@pytest.fixture
def modbus_config(config: MakeConfig) -> MakeConfig:
    def make(port: str, **overrides: Any) -> PlcConfig:
        return config(port, protocol="modbus", **overrides)

    return make


@pytest.fixture
def sim() -> Iterator[PlcSimulator]:
    with PlcSimulator("modbus") as simulator:
        yield simulator


def verdict(part_id: str, accept: bool = True, *, within_s: float = 0.5, reason: int = 0) -> PlcVerdict:
    return PlcVerdict(part_id, accept, reason, deadline_ts=time.time() + within_s)


def test_registers_and_coil_hold_each_verdict(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    with ModbusLink(modbus_config(sim.device_path)) as link:
        for number, (accept, reason) in enumerate([(True, 0), (False, 2), (True, 0)], start=1):
            delivery = link.deliver(verdict(f"P-{70000 + number}", accept, reason=reason))
            assert (delivery.outcome, delivery.attempts) == ("acked", 1)
            part_high, part_low, reason_register, sequence = sim.read_holding_registers(0, 4)
            assert (part_high << 16 | part_low, reason_register, sequence) == (70000 + number, reason, number)
            assert sim.read_coils(0) == [accept]
    assert [(v.part_id, v.accept, v.reason_code) for v in sim.verdicts] == [
        ("70001", True, 0),
        ("70002", False, 2),
        ("70003", True, 0),
    ]


def test_ascii_ids_and_a_verdict_register(modbus_config: MakeConfig) -> None:
    layout = ModbusMap(
        unit_id=7,
        verdict="register",
        verdict_address=20,
        part_id_format="ascii",
        part_id_address=10,
        part_id_registers=4,
        reason_address=21,
        sequence_address=22,
        heartbeat_address=None,
    )
    with PlcSimulator("modbus", modbus=layout, truth={"LOT9-A17": "good"}) as sim:
        with ModbusLink(modbus_config(sim.device_path, modbus=layout)) as link:
            accepted = link.deliver(verdict("LOT9-A17"))
            record = sim.read_holding_registers(10, 13)
            rejected = link.deliver(verdict("LOT9-B3", False, reason=3))
            after = sim.read_holding_registers(10, 13)
        summary = sim.summary()
    assert accepted.outcome == rejected.outcome == "acked"
    assert record[:4] == [0x4C4F, 0x5439, 0x2D41, 0x3137]  # "LO", "T9", "-A", "17"
    assert after[:4] == [0x4C4F, 0x5439, 0x2D42, 0x3300]  # "LO", "T9", "-B", "3" NUL-padded
    assert record[10:] == [ACCEPT_VALUE, 0, 1]  # verdict, reason, sequence
    assert after[10:] == [REJECT_VALUE, 3, 2]
    assert [v.part_id for v in sim.verdicts] == ["LOT9-A17", "LOT9-B3"]
    assert summary["unknown"] == 1 and summary["false_rejects"] == 0


def test_a_silent_plc_fails_within_the_deadline(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    wrong_unit = modbus_config(sim.device_path, modbus=ModbusMap(unit_id=9))
    with ModbusLink(wrong_unit) as link:
        start = time.time()
        delivery = link.deliver(verdict("P-1", within_s=0.2))
        elapsed = time.time() - start
    assert delivery.outcome == "failed" and delivery.attempts == 0
    assert "does not answer" in delivery.detail
    assert elapsed < 0.2 + OVERRUN_S
    assert sim.verdicts == []


def test_refused_writes_fail_and_are_counted(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    beyond_the_plc = modbus_config(sim.device_path, modbus=ModbusMap(reason_address=500))
    with ModbusLink(beyond_the_plc) as link:
        start = time.time()
        delivery = link.deliver(verdict("P-1", within_s=0.2))
        elapsed = time.time() - start
        counters = link.counters()
    assert delivery.outcome == "failed" and "refused" in delivery.detail
    assert elapsed < 0.2 + OVERRUN_S
    assert counters["error_responses"] >= 2 and counters["port_errors"] == 0
    assert sim.verdicts == []


def test_a_plc_in_stop_then_back(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    with ModbusLink(modbus_config(sim.device_path)) as link:
        assert link.deliver(verdict("P-1")).outcome == "acked"
        sim.mute(0.3)
        start = time.time()
        gap = link.deliver(verdict("P-2", within_s=0.15))
        assert time.time() - start < 0.15 + OVERRUN_S
        time.sleep(max(0.0, start + 0.35 - time.time()))
        after = link.deliver(verdict("P-3"))
        counters = link.counters()
    assert gap.outcome == "failed" and after.outcome == "acked"
    assert [v.part_id for v in sim.verdicts] == ["1", "3"]
    assert counters["failed"] == 1 and counters["acked"] == 2


def test_lost_frames_are_retried_and_never_latched_twice(modbus_config: MakeConfig) -> None:
    with PlcSimulator("modbus", drop_rate=0.1, seed=11) as sim:
        with ModbusLink(modbus_config(sim.device_path, ack_timeout_s=0.02)) as link:
            deliveries = [link.deliver(verdict(f"P-{i}", within_s=2.0)) for i in range(1, 13)]
            counters = link.counters()
        summary = sim.summary()
    assert [d.outcome for d in deliveries] == ["acked"] * 12
    assert summary["dropped"] > 0 and counters["retries"] > 0
    assert summary["parts"] == summary["verdicts"] == 12 and summary["duplicates"] == 0


def test_the_adapter_vanishes_and_comes_back(modbus_config: MakeConfig, tmp_path: Path) -> None:
    with PlcSimulator("modbus", link=tmp_path / "plc") as sim:
        with ModbusLink(modbus_config(sim.device_path)) as link:
            assert link.deliver(verdict("P-1")).outcome == "acked"
            sim.unplug()
            lost = link.deliver(verdict("P-2", within_s=0.15))
            sim.replug()
            back = link.deliver(verdict("P-3", within_s=1.0))
            counters = link.counters()
        assert [v.part_id for v in sim.verdicts] == ["1", "3"]
    assert lost.outcome == "failed" and back.outcome == "acked"
    assert counters["port_errors"] >= 1 and counters["reconnects"] == 1


def test_a_restarted_station_goes_on_from_the_plcs_sequence(
    sim: PlcSimulator, modbus_config: MakeConfig
) -> None:
    for part in ("P-1", "P-2"):  # a fresh link each time: without resync both would write sequence 1
        with ModbusLink(modbus_config(sim.device_path)) as link:
            assert link.deliver(verdict(part)).outcome == "acked"
    assert [v.part_id for v in sim.verdicts] == ["1", "2"]
    assert sim.read_holding_registers(3) == [2]


def test_a_hung_client_call_is_abandoned(
    sim: PlcSimulator, modbus_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_write_register = ModbusSerialClient.write_register

    def hang(self: ModbusSerialClient, *args: Any, **kwargs: Any) -> Any:
        release.wait(timeout=5.0)  # an RTU framer stuck on an unplugged adapter
        return real_write_register(self, *args, **kwargs)

    no_heartbeat = modbus_config(sim.device_path, modbus=ModbusMap(heartbeat_address=None))
    with ModbusLink(no_heartbeat) as link:
        monkeypatch.setattr(ModbusSerialClient, "write_register", hang)
        start = time.time()
        hung = link.deliver(verdict("P-1", within_s=0.1))
        elapsed = time.time() - start
        release.set()
        monkeypatch.undo()
        recovered = link.deliver(verdict("P-2", within_s=1.0))
        counters = link.counters()
    assert hung.outcome == "failed" and "hung" in hung.detail
    assert elapsed < 0.1 + 0.05 + OVERRUN_S  # the hung call's limit: its timeout + write timeout + margin
    assert recovered.outcome == "acked"
    assert counters["port_errors"] >= 1 and counters["reconnects"] >= 1


def test_heartbeat_register_counts_up(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    with ModbusLink(modbus_config(sim.device_path, heartbeat_s=0.05)):
        time.sleep(0.3)
        value = sim.read_holding_registers(4)[0]
    assert len(sim.heartbeat_times) >= 4 and value >= 3


def test_unrepresentable_part_ids_are_not_sent(sim: PlcSimulator, modbus_config: MakeConfig) -> None:
    with ModbusLink(modbus_config(sim.device_path)) as link:
        delivery = link.deliver(verdict("no-number"))
    assert (delivery.outcome, delivery.attempts) == ("failed", 0) and "trailing number" in delivery.detail
    assert sim.verdicts == []


def test_register_runs_group_consecutive_addresses() -> None:
    assert register_runs({3: 30, 0: 0, 1: 10, 7: 70, 2: 20}) == [(0, [0, 10, 20, 30]), (7, [70])]
