"""The station: frames in, one verdict per part out to the PLC, on deadline, nothing lost.

Three threads, so that none waits on another's slow work (DESIGN "Runtime shape"):

- **ingest** receives and decodes frames and records their arrival in the audit;
- **inspect** runs the agent (whose model runs in a thread of its own) or issues the fail-safe for a
  corrupt or already-late frame;
- **deliver** sends each verdict to the PLC and records the delivery.

Every received frame gets exactly one verdict: the agent's, or a fail-safe reject. The queue between ingest
and inspection is small and blocking: in ``pull`` mode a slow model makes the camera wait (back-pressure)
instead of dropping parts. On stop (SIGTERM) the station stops receiving, inspects and delivers what is
already in flight, flushes the audit and exits; at start it closes, as lost, parts a crashed run received
but never finished, so the audit accounts for every part across restarts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from station.agent import Agent
from station.audit.store import AuditStore
from station.backends import Backend, load_backend
from station.camera.base import Frame, FrameSource
from station.camera.zmq_source import open_source
from station.config import StationConfig
from station.models import resolve_model
from station.observability.live import LiveState
from station.observability.metrics import StationMetrics
from station.observability.server import ObservabilityServer
from station.observability.stamps import Stamps
from station.plc import open_link
from station.plc.base import REASON_CODES, Delivery, PlcLink, PlcVerdict
from station.systemd import Watchdog, notify
from station.verdict import Verdict
from tools.prior import PriorStore

log = logging.getLogger(__name__)

# A camera clock further than this from the station's is not trusted for deadlines.
MAX_CLOCK_SKEW_S = 5.0


@dataclass
class StationStats:
    """What the station did since it started; the demo and `indus run` print it at the end."""

    received: int = 0
    verdicts: int = 0
    decisions: Counter = field(default_factory=Counter)
    fail_safes: Counter = field(default_factory=Counter)
    deliveries: Counter = field(default_factory=Counter)
    lost_at_start: int = 0

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "verdicts": self.verdicts,
            "decisions": dict(self.decisions),
            "fail_safes": dict(self.fail_safes),
            "deliveries": dict(self.deliveries),
            "lost_at_start": self.lost_at_start,
        }


@dataclass
class _Inspected:
    frame: Frame
    verdict: Verdict
    inspect_start: float
    verdict_ts: float
    deadline_ts: float


class Station:
    """One running station. Parts can be injected for tests (``backend``, ``source``, ``link``)."""

    def __init__(
        self,
        config: StationConfig,
        *,
        backend: Backend | None = None,
        source: FrameSource | None = None,
        link: PlcLink | None = None,
    ):
        self.config = config
        self.backend = backend or load_backend(
            config.model.backend,
            resolve_model(config.model.model) if config.model.backend == "hf" else config.model.model,
            adapter=config.model.adapter,
            device=config.model.device,
            base_url=config.model.base_url,
        )
        self.agent = Agent(self.backend, priors=PriorStore.default(config.priors))
        self.metrics = StationMetrics()
        self.live = LiveState()
        self.stats = StationStats()
        self.audit = AuditStore(
            config.audit.path,
            config.audit.evidence_dir,
            config.audit.keep_evidence,
            config.audit.max_evidence_parts,
            config.audit.max_evidence_mb,
            config_version=config.version,
        )
        self.source = source or open_source(config.camera)
        self.link = link or open_link(config.plc)
        self.server = (
            ObservabilityServer(self.metrics, self.live, host=config.http.host, port=config.http.port)
            if config.http.enabled
            else None
        )
        self._to_inspect: queue.Queue[Frame | None] = queue.Queue(maxsize=config.queue_size)
        self._to_deliver: queue.Queue[_Inspected | None] = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watchdog = Watchdog()
        self._threads = [
            threading.Thread(target=self._ingest_loop, name="ingest", daemon=True),
            threading.Thread(target=self._inspect_loop, name="inspect", daemon=True),
            threading.Thread(target=self._deliver_loop, name="deliver", daemon=True),
        ]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        lost = [row["part_id"] for row in self.audit.unfinished()]
        if lost:
            log.warning("%d part(s) from an earlier run never got a verdict; recorded as lost", len(lost))
            self.audit.mark_lost(lost, "station stopped before a verdict; the PLC rejected the part")
            self.stats.lost_at_start = len(lost)
        for thread in self._threads:
            thread.start()
        notify("READY=1")
        log.info("station running: model %s, config %s", self.backend.model_id, self.config.version)

    def stop(self) -> None:
        """Stop receiving; parts in flight still get their verdicts (see `join`)."""
        self._stopping.set()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the pipeline to drain after `stop`; True when it did."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Release everything; call after `join`."""
        notify("STOPPING=1")
        self.agent.close()
        self.link.close()
        self.audit.flush()
        self.audit.close()
        if self.server is not None:
            self.server.close()
        self.backend.close()

    def run_until_stopped(self) -> StationStats:
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        finally:
            self.stop()
            self.join()
            self.close()
        return self.stats

    # -- the three loops ---------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._watchdog.ping()
                frame = self.source.receive(0.05)
                self.metrics.camera_dropped(self.source.dropped)
                if frame is None:
                    continue
                with self._lock:
                    self.stats.received += 1
                self.metrics.part_received()
                self.audit.record_received(frame)
                self._to_inspect.put(frame)  # blocks when the model is behind: back-pressure
        except Exception:
            log.exception("ingest failed; stopping the station")
            self._stopping.set()
        finally:
            self.source.close()
            self._to_inspect.put(None)

    def _inspect_loop(self) -> None:
        while (frame := self._to_inspect.get()) is not None:
            self._to_deliver.put(self._inspect(frame))
        self._to_deliver.put(None)

    def _deliver_loop(self) -> None:
        while (item := self._to_deliver.get()) is not None:
            verdict = item.verdict
            delivery = self.link.deliver(
                PlcVerdict(
                    part_id=item.frame.part_id,
                    accept=verdict.decision == "accept",
                    reason_code=REASON_CODES.get(verdict.reason, REASON_CODES["internal_error"]),
                    deadline_ts=item.deadline_ts,
                )
            )
            self._finish(item, delivery)

    # -- one part ----------------------------------------------------------------------------------

    def _deadline(self, frame: Frame, budget_ms: float) -> float:
        """The part's deadline on the station's clock: from capture when the camera clock is sane."""
        start = frame.received_ts
        if frame.capture_ts is not None and abs(frame.received_ts - frame.capture_ts) <= MAX_CLOCK_SKEW_S:
            start = frame.capture_ts
        return start + (frame.deadline_ms or budget_ms) / 1000

    def _inspect(self, frame: Frame) -> _Inspected:
        inspect_start = time.time()
        product, recipe = self.config.recipe(frame.product)
        deadline_ts = self._deadline(frame, recipe.deadline_ms)
        budget_s = deadline_ts - self.config.plc_reserve_ms / 1000 - inspect_start
        agent_config = recipe.agent_config(max(budget_s, 1e-3), self.config.max_observation_pixels)
        if frame.error is not None or frame.image is None:
            verdict = self.agent.fail_safe(
                "corrupt_frame",
                frame.error or "no image",
                part_id=frame.part_id,
                product=product,
                config=agent_config,
            )
        elif budget_s <= 0:
            verdict = self.agent.fail_safe(
                "deadline",
                f"deadline passed {-budget_s * 1000:.0f} ms before inspection could start",
                part_id=frame.part_id,
                product=product,
                config=agent_config,
            )
        else:
            verdict = self.agent.inspect(frame.image, product, part_id=frame.part_id, config=agent_config)
        verdict_ts = time.time()
        self.audit.record_verdict(
            frame.part_id, verdict, Stamps.of(frame, inspect_start=inspect_start, verdict=verdict_ts)
        )
        return _Inspected(frame, verdict, inspect_start, verdict_ts, deadline_ts)

    def _finish(self, item: _Inspected, delivery: Delivery) -> None:
        verdict = item.verdict
        stamps = Stamps.of(
            item.frame, inspect_start=item.inspect_start, verdict=item.verdict_ts, delivery=delivery
        )
        self.audit.record_delivery(item.frame.part_id, delivery)
        self.metrics.part_finished(verdict, delivery, stamps)
        self.live.add(item.frame.part_id, verdict)
        with self._lock:
            self.stats.verdicts += 1
            self.stats.decisions[verdict.decision] += 1
            if verdict.fail_safe:
                self.stats.fail_safes[verdict.reason] += 1
            self.stats.deliveries[delivery.outcome] += 1
        if delivery.outcome != "acked":
            log.warning(
                "part %s: verdict %s not acknowledged in time (%s)",
                item.frame.part_id,
                verdict.decision,
                delivery.outcome,
            )
