from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from station.plc import ascii_link
from station.plc.ascii_link import AsciiLink
from station.plc.base import PlcVerdict
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator
from station.plc.wire import VerdictLine, parse_line
from tests.mocks.flaky_serial import FlakySerial
from tests.mocks.serial_peer import ScriptedPeer

MakeConfig = Callable[..., PlcConfig]
SLACK_S = 0.15  # scheduling on a loaded 2-core machine; deadlines in these tests are 0.1-0.5 s


def verdict(part_id: str, accept: bool = True, *, within_s: float = 0.5, reason: int = 0) -> PlcVerdict:
    return PlcVerdict(part_id, accept, reason, deadline_ts=time.time() + within_s)


def test_every_verdict_is_acked_once_and_scored_against_truth(config: MakeConfig) -> None:
    truth = {f"P-{i}": "defective" if i % 4 == 0 else "good" for i in range(30)}
    sent = [(part_id, label == "good") for part_id, label in truth.items() if part_id != "P-29"]
    sent[0] = ("P-0", True)  # a defective part accepted
    sent[1] = ("P-1", False)  # a good part rejected
    sent.append(("P-999", False))  # a part the truth does not know
    with PlcSimulator(truth=truth) as sim, AsciiLink(config(sim.device_path)) as link:
        deliveries = [
            link.deliver(verdict(part_id, accept, reason=0 if accept else 2)) for part_id, accept in sent
        ]
        taken = sim.verdicts
        summary = sim.summary()
        counters = link.counters()
    assert [(d.outcome, d.attempts) for d in deliveries] == [("acked", 1)] * len(sent)
    assert all(
        d.sent_ts is not None and d.acked_ts is not None and d.sent_ts <= d.acked_ts for d in deliveries
    )
    assert [(v.part_id, v.accept) for v in taken] == sent
    assert {v.reason_code for v in taken if not v.accept} == {2}
    assert summary["verdicts"] == summary["parts"] == len(sent)
    assert summary["duplicates"] == summary["conflicting"] == 0
    assert (summary["false_accepts"], summary["false_rejects"], summary["unknown"], summary["missing"]) == (
        1,
        1,
        1,
        1,
    )
    assert summary["accepted"] == sum(accept for _, accept in sent)
    assert counters["acked"] == counters["attempts"] == len(sent)
    assert counters["retries"] == counters["failed"] == counters["late"] == counters["ignored_acks"] == 0


def test_a_plc_in_stop_costs_the_parts_in_the_gap_and_later_ones_ack(config: MakeConfig) -> None:
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path)) as link:
        assert link.deliver(verdict("before")).outcome == "acked"
        sim.mute(0.4)
        start = time.monotonic()
        gap = [link.deliver(verdict(f"gap-{i}", within_s=0.12)) for i in range(2)]
        assert time.monotonic() - start < 2 * 0.12 + SLACK_S
        time.sleep(max(0.0, start + 0.45 - time.monotonic()))
        after = link.deliver(verdict("after"))
        taken = [v.part_id for v in sim.verdicts]
        counters = link.counters()
    assert [d.outcome for d in gap] == ["failed", "failed"]
    assert all(d.attempts >= 2 and d.acked_ts is None and d.detail == "no acknowledgement" for d in gap)
    assert after.outcome == "acked"
    assert taken == ["before", "after"]
    assert counters["failed"] == 2 and counters["acked"] == 2 and counters["retries"] >= 2


def test_a_slow_plc_gets_resends_and_answers_each(config: MakeConfig) -> None:
    with PlcSimulator(ack_delay_s=0.08) as sim, AsciiLink(config(sim.device_path)) as link:
        first = link.deliver(verdict("slow-1"))
        second = link.deliver(verdict("slow-2"))
        time.sleep(0.1)  # the last resend's ACK
        link.deliver(verdict("flush", within_s=0.3))  # reads and ignores it
        summary = sim.summary()
        counters = link.counters()
    assert first.outcome == second.outcome == "acked"
    assert first.attempts >= 2 and first.acked_ts - first.sent_ts >= 0.08
    assert summary["duplicates"] >= 2 and summary["conflicting"] == 0
    assert counters["ignored_acks"] >= 2


def test_lost_lines_are_resent_until_acked(config: MakeConfig) -> None:
    with (
        PlcSimulator(drop_rate=0.5, seed=3) as sim,
        AsciiLink(config(sim.device_path, ack_timeout_s=0.02)) as link,
    ):
        deliveries = [link.deliver(verdict(f"D-{i}", within_s=1.0)) for i in range(20)]
        summary = sim.summary()
        counters = link.counters()
    assert all(d.outcome == "acked" for d in deliveries)
    assert summary["dropped"] == counters["retries"] > 0
    assert summary["parts"] == summary["verdicts"] == 20


def test_the_device_vanishes_and_comes_back(config: MakeConfig, tmp_path: Path) -> None:
    with PlcSimulator(link=tmp_path / "plc") as sim, AsciiLink(config(sim.device_path)) as link:
        assert link.deliver(verdict("a")).outcome == "acked"
        sim.unplug()
        assert not (tmp_path / "plc").exists()
        start = time.time()
        lost = [link.deliver(verdict(f"lost-{i}", within_s=0.15)) for i in range(2)]
        assert time.time() - start < 2 * 0.15 + SLACK_S
        sim.replug()
        back = link.deliver(verdict("b", within_s=1.0))
        taken = [v.part_id for v in sim.verdicts]
        counters = link.counters()
    assert [d.outcome for d in lost] == ["failed", "failed"]
    assert lost[0].detail.startswith("port")
    assert back.outcome == "acked"
    assert taken == ["a", "b"]
    assert counters["port_errors"] >= 1 and counters["reconnects"] == 1


def test_a_port_that_is_not_there_yet(config: MakeConfig, tmp_path: Path) -> None:
    path = tmp_path / "later"
    with AsciiLink(config(str(path))) as link:
        start = time.time()
        missing = link.deliver(verdict("early", within_s=0.1))
        assert time.time() - start < 0.1 + SLACK_S
        with PlcSimulator(link=path):
            present = link.deliver(verdict("late-comer", within_s=1.0))
        counters = link.counters()
    assert missing.outcome == "failed" and missing.attempts == 0 and "port down" in missing.detail
    assert present.outcome == "acked"
    assert counters["reconnects"] == 0  # the first open is no reconnect


def test_write_timeouts_and_a_pulled_adapter_reconnect(
    config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FlakySerial()
    monkeypatch.setattr(ascii_link.serial, "serial_for_url", flaky.serial_for_url)
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path)) as link:
        assert link.deliver(verdict("ok-1")).outcome == "acked"
        flaky.stall_writes = True
        stalled = link.deliver(verdict("stalled", within_s=0.2))
        flaky.stall_writes = False
        assert link.deliver(verdict("ok-2")).outcome == "acked"
        flaky.unplug()
        pulled = link.deliver(verdict("pulled", within_s=0.1))
        flaky.replug()
        assert link.deliver(verdict("ok-3")).outcome == "acked"
        counters = link.counters()
    assert stalled.outcome == pulled.outcome == "failed"
    assert "Write timeout" in stalled.detail
    assert flaky.opens >= 4
    assert counters["port_errors"] >= 3 and counters["reconnects"] >= 2


def test_acks_for_other_parts_are_ignored_and_counted(config: MakeConfig) -> None:
    def answer(line: bytes) -> bytes:
        parsed = parse_line(line)
        if not isinstance(parsed, VerdictLine):
            return b""
        if parsed.part_id.startswith("never"):
            return b"K,someone-else\r\n"
        return b"K,previous-part\r\nnoise\r\nK," + parsed.part_id.encode() + b"\r\n"

    with ScriptedPeer(answer) as peer, AsciiLink(config(peer.path)) as link:
        matched = link.deliver(verdict("P-7"))
        unmatched = link.deliver(verdict("never-acked", within_s=0.15))
        counters = link.counters()
    assert matched.outcome == "acked" and matched.attempts == 1
    assert unmatched.outcome == "failed" and unmatched.attempts >= 2
    assert counters["ignored_acks"] == 1 + unmatched.attempts
    assert counters["unexpected_lines"] == 1


def test_heartbeats_about_every_period_and_echoes_counted(config: MakeConfig) -> None:
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path, heartbeat_s=0.1)) as link:
        time.sleep(0.55)
        times = sim.heartbeat_times
        counters = link.counters()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 5
    assert 0.08 <= statistics.median(gaps) <= 0.15
    assert counters["heartbeats"] >= len(times)
    assert counters["heartbeat_replies"] >= len(times) - 2  # the last echoes may still be on the wire


def test_deliveries_and_heartbeats_never_interleave_on_the_wire(config: MakeConfig) -> None:
    with (
        PlcSimulator(ack_delay_s=0.002) as sim,
        AsciiLink(config(sim.device_path, heartbeat_s=0.002)) as link,
    ):
        results = []
        worker = threading.Thread(
            target=lambda: results.extend(link.deliver(verdict(f"T-{i}")) for i in range(100))
        )
        worker.start()
        worker.join(timeout=10)
        summary = sim.summary()
    assert [d.outcome for d in results] == ["acked"] * 100
    assert summary["parts"] == 100 and summary["garbage_lines"] == 0 and summary["heartbeats"] >= 20


def test_late_verdicts_still_reach_the_plc_but_never_count_as_acked(config: MakeConfig) -> None:
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path)) as link:
        late = link.deliver(PlcVerdict("behind", True, 0, deadline_ts=time.time() - 1.0))
        taken = sim.verdicts
    assert late.outcome == "late" and late.attempts == 1
    assert [v.part_id for v in taken] == ["behind"]


def test_verdicts_without_deadline_use_the_default_window(config: MakeConfig) -> None:
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path, default_deadline_s=0.1)) as link:
        sim.mute(10)
        start = time.time()
        delivery = link.deliver(PlcVerdict("no-deadline", True, 0))
    assert delivery.outcome == "failed" and 0.1 <= time.time() - start < 0.1 + SLACK_S


def test_unsendable_verdicts_fail_without_touching_the_wire(config: MakeConfig) -> None:
    with PlcSimulator() as sim, AsciiLink(config(sim.device_path)) as link:
        bad_id = link.deliver(verdict("a,b"))
        bad_reason = link.deliver(PlcVerdict("ok", True, 70000))
        counters = link.counters()
        taken = sim.verdicts
    assert (bad_id.outcome, bad_id.attempts) == ("failed", 0)
    assert "not sent" in bad_id.detail and "','" in bad_id.detail
    assert bad_reason.outcome == "failed"
    assert counters["invalid"] == counters["failed"] == 2 and taken == []


def test_delivery_after_close_fails_without_raising(config: MakeConfig) -> None:
    with PlcSimulator() as sim:
        link = AsciiLink(config(sim.device_path))
        link.close()
        delivery = link.deliver(verdict("after-close"))
    assert delivery.outcome == "failed" and delivery.detail == "link closed"


def test_pyserial_urls_work_and_an_echo_is_no_ack(config: MakeConfig) -> None:
    with AsciiLink(config("loop://")) as link:
        echoed = link.deliver(verdict("echo", within_s=0.12))
        counters = link.counters()
    assert echoed.outcome == "failed" and echoed.attempts >= 2
    assert counters["unexpected_lines"] == echoed.attempts
