"""Prometheus metrics of one station, fed by one call per event from the daemon.

The registry is the station's own, not prometheus_client's global one, so two stations (or tests) in one
process never share counters. Every label value is known in advance and pre-created at zero: rates and
ratios work from the first scrape, and a misbehaving model cannot invent label values (an unknown tool name
is counted as ``other``), which would grow the series without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import get_args, get_type_hints

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from station.observability.stamps import SPANS, Stamps
from station.plc.base import Delivery
from station.verdict import Decision, FailSafeReason, Verdict
from tools.toolkit import default_registry

# From the sub-millisecond decode to a model that runs into a long deadline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGES = ("decode", "queue_wait", "model", "tools", "inspect", "plc", "end_to_end")
OTHER_TOOL = "other"


class StationMetrics:
    """Counters, histograms and gauges of one station. Thread-safe (prometheus_client metrics are)."""

    def __init__(self, tools: Iterable[str] | None = None):
        """``tools``: the tool names that get a label value of their own (default: the station's toolkit)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._tools = frozenset(default_registry().names if tools is None else tools)
        common = {"namespace": "indus", "registry": self.registry}
        self.parts = Counter("parts_received", "Parts (frames) received from the camera.", **common)
        self.in_flight = Gauge("parts_in_flight", "Parts received and not finished yet.", **common)
        self.verdicts = Counter("verdicts", "Verdicts by decision.", ["decision"], **common)
        self.fail_safes = Counter(
            "fail_safes", "Fail-safe rejects by reason (also counted in verdicts).", ["reason"], **common
        )
        self.latency = Histogram(
            "stage_latency_seconds",
            "Seconds per part spent in each stage; end_to_end runs from camera capture to PLC ACK.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            **common,
        )
        self.dropped = Counter("frames_dropped", "Frames lost before the station (sequence gaps).", **common)
        self.deliveries = Counter(
            "plc_deliveries", "PLC deliveries by outcome (acked, late, failed).", ["outcome"], **common
        )
        self.retries = Counter("plc_retries", "PLC send attempts beyond the first.", **common)
        self.tool_calls = Counter(
            "tool_calls", "Tool calls by tool and result (ok, error).", ["tool", "result"], **common
        )
        for decision in get_args(Decision):
            self.verdicts.labels(decision)
        for reason in get_args(FailSafeReason):
            self.fail_safes.labels(reason)
        for stage in STAGES:
            self.latency.labels(stage)
        for outcome in get_args(get_type_hints(Delivery)["outcome"]):
            self.deliveries.labels(outcome)
        for tool in (*sorted(self._tools), OTHER_TOOL):
            for result in ("ok", "error"):
                self.tool_calls.labels(tool, result)
        self._drop_lock = threading.Lock()
        self._drops_seen = 0

    # -- events --------------------------------------------------------------------------------------

    def part_received(self) -> None:
        self.parts.inc()
        self.in_flight.inc()

    def part_finished(self, verdict: Verdict, delivery: Delivery | None, stamps: Stamps) -> None:
        """Everything about one part once its fate is known (delivered, or no PLC configured)."""
        self.in_flight.dec()
        self.verdicts.labels(verdict.decision).inc()
        if verdict.fail_safe and verdict.reason is not None:
            self.fail_safes.labels(verdict.reason).inc()
        for name in SPANS:
            seconds = stamps.span(name)
            if seconds is not None:
                self.latency.labels(name).observe(seconds)
        if verdict.trace:  # the model ran; a corrupt frame never reaches it
            self.latency.labels("model").observe(verdict.timings.model_s)
        if verdict.tool_calls:
            self.latency.labels("tools").observe(verdict.timings.tools_s)
        for record in verdict.trace:
            for call in record.tool_calls:
                tool = call.name if call.name in self._tools else OTHER_TOOL
                self.tool_calls.labels(tool, "ok" if call.ok else "error").inc()
        if delivery is not None:
            self.deliveries.labels(delivery.outcome).inc()
            self.retries.inc(max(delivery.attempts - 1, 0))

    def camera_dropped(self, total: int) -> None:
        """Follow the camera source's cumulative drop count; a smaller count means a new source (reconnect)
        that counts from zero again."""
        with self._drop_lock:
            new = total - self._drops_seen if total >= self._drops_seen else total
            self._drops_seen = total
        if new:
            self.dropped.inc(new)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
