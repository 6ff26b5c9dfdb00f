"""The metrics a Prometheus server scrapes after a few parts: the names, labels and values it will see."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from station.camera.base import Frame
from station.observability.metrics import StationMetrics
from station.observability.stamps import Stamps
from station.plc.base import Delivery


def samples(metrics: StationMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def stamps(delivery: Delivery | None, now: float) -> Stamps:
    frame = Frame("p", 1, capture_ts=now - 0.020, product="bottle", image=None, received_ts=now)
    frame.decoded_ts = now + 0.002
    return Stamps.of(frame, inspect_start=now + 0.010, verdict=now + 0.110, delivery=delivery)


def test_a_fresh_station_exports_every_series_at_zero():
    values = samples(StationMetrics())
    assert values[("indus_parts_received_total", ())] == 0
    assert values[("indus_verdicts_total", (("decision", "reject"),))] == 0
    assert values[("indus_fail_safes_total", (("reason", "deadline"),))] == 0
    assert values[("indus_plc_deliveries_total", (("outcome", "late"),))] == 0
    assert values[("indus_tool_calls_total", (("result", "ok"), ("tool", "measure")))] == 0
    assert values[("indus_stage_latency_seconds_count", (("stage", "end_to_end"),))] == 0


def test_parts_verdicts_latencies_deliveries_and_tools_are_counted(verdicts):
    metrics = StationMetrics()
    now = time.time()
    acked = Delivery("acked", attempts=1, sent_ts=now + 0.111, acked_ts=now + 0.115)
    retried = Delivery("late", attempts=3, sent_ts=now + 0.111, acked_ts=now + 0.400)
    failed = Delivery("failed", attempts=4, sent_ts=now + 0.111)
    for _ in range(4):
        metrics.part_received()
    metrics.part_finished(verdicts["accept"], acked, stamps(acked, now))
    metrics.part_finished(verdicts["reject"], retried, stamps(retried, now))
    metrics.part_finished(verdicts["unknown_tool"], failed, stamps(failed, now))
    values = samples(metrics)

    assert values[("indus_parts_received_total", ())] == 4
    assert values[("indus_parts_in_flight", ())] == 1
    assert values[("indus_verdicts_total", (("decision", "accept"),))] == 1
    assert values[("indus_verdicts_total", (("decision", "reject"),))] == 2
    assert values[("indus_fail_safes_total", (("reason", "tool_error"),))] == 1
    assert values[("indus_plc_deliveries_total", (("outcome", "acked"),))] == 1
    assert values[("indus_plc_deliveries_total", (("outcome", "late"),))] == 1
    assert values[("indus_plc_deliveries_total", (("outcome", "failed"),))] == 1
    assert values[("indus_plc_retries_total", ())] == 0 + 2 + 3
    assert values[("indus_tool_calls_total", (("result", "ok"), ("tool", "crop")))] == 1
    # A model's invented tool name never becomes a label value of its own.
    assert values[("indus_tool_calls_total", (("result", "error"), ("tool", "other")))] == 2
    assert not any("xray" in str(key) for key in values)

    def count(stage: str) -> float:
        return values[("indus_stage_latency_seconds_count", (("stage", stage),))]

    def total(stage: str) -> float:
        return values[("indus_stage_latency_seconds_sum", (("stage", stage),))]

    assert [count(s) for s in ("decode", "queue_wait", "inspect", "model")] == [3, 3, 3, 3]
    assert count("tools") == 2 and count("plc") == 2 and count("end_to_end") == 2  # failed: no ACK
    assert total("decode") == pytest.approx(3 * 0.002, abs=1e-6)
    assert total("queue_wait") == pytest.approx(3 * 0.008, abs=1e-6)
    assert total("inspect") == pytest.approx(3 * 0.100, abs=1e-6)
    assert total("plc") == pytest.approx(0.004 + 0.289, abs=1e-6)
    assert total("end_to_end") == pytest.approx(0.135 + 0.420, abs=1e-6)
    assert total("model") == pytest.approx(sum(v.timings.model_s for v in verdicts.values()))
    bucket = ("indus_stage_latency_seconds_bucket", (("le", "0.25"), ("stage", "inspect")))
    assert values[bucket] == 3


def test_clock_skew_is_not_observed_and_camera_drops_follow_the_source():
    metrics = StationMetrics(tools=["crop"])
    now = time.time()
    skewed = Frame("p", 1, capture_ts=now + 5, product=None, image=None, received_ts=now)
    delivery = Delivery("acked", 1, now + 0.1, now + 0.2)
    assert Stamps.of(skewed, delivery=delivery).span("end_to_end") is None
    metrics.camera_dropped(5)
    metrics.camera_dropped(7)
    metrics.camera_dropped(2)  # a new source (reconnect) counting from zero
    values = samples(metrics)
    assert values[("indus_frames_dropped_total", ())] == 9
    assert ("indus_tool_calls_total", (("result", "ok"), ("tool", "measure"))) not in values


def test_two_stations_in_one_process_do_not_share_counters():
    first, second = StationMetrics(), StationMetrics()
    first.part_received()
    assert samples(second)[("indus_parts_received_total", ())] == 0
