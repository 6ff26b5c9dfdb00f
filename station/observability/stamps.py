"""One part's timeline: the wall-clock time of each stage it went through, taken once.

The same stamps feed the audit row, the metrics and the benchmarks, so a latency never means two different
things in two places. Most come with the objects the daemon already holds (the frame's capture, receipt and
decode times; the delivery's send and acknowledgement times); the daemon adds the two it takes itself: when
inspection started and when the verdict was ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from station.camera.base import Frame
from station.plc.base import Delivery

# Stage latencies as spans between two stamps, in pipeline order. Model and tool time are not spans: they
# come from the verdict's own timings, which the loop measured round by round.
SPANS: dict[str, tuple[str, str]] = {
    "decode": ("received", "decoded"),
    "queue_wait": ("decoded", "inspect_start"),
    "inspect": ("inspect_start", "verdict"),
    "plc": ("plc_sent", "plc_ack"),
    "end_to_end": ("capture", "plc_ack"),
}


@dataclass(frozen=True)
class Stamps:
    """Seconds since the epoch (``time.time()``); None for a stage the part never reached.

    ``capture`` is the camera sender's clock, every other stamp the station's.
    """

    received: float
    capture: float | None = None
    decoded: float | None = None
    inspect_start: float | None = None
    verdict: float | None = None
    plc_sent: float | None = None
    plc_ack: float | None = None

    @classmethod
    def of(
        cls,
        frame: Frame,
        *,
        inspect_start: float | None = None,
        verdict: float | None = None,
        delivery: Delivery | None = None,
    ) -> Stamps:
        return cls(
            received=frame.received_ts,
            capture=frame.capture_ts,
            decoded=frame.decoded_ts,
            inspect_start=inspect_start,
            verdict=verdict,
            plc_sent=delivery.sent_ts if delivery else None,
            plc_ack=delivery.acked_ts if delivery else None,
        )

    def span(self, name: str) -> float | None:
        """The named stage's duration, or None when a stamp is missing or the clocks disagree (a negative
        span, typically the camera's clock running ahead of the station's), which would poison percentiles."""
        start, end = (getattr(self, stage) for stage in SPANS[name])
        if start is None or end is None or end < start:
            return None
        return end - start
