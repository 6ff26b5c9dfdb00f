"""`indus demo`: a whole line on one machine: a camera simulator, the station, and a PLC simulator.

The station runs exactly as `indus run` does (camera over ZeroMQ on loopback, PLC over a real pty); the parts
are fresh synthetic parts with known labels, so the summary can say how many verdicts were right.

The embedded default model is the demo model shipped in ``station/models/demo`` (trained from random
weights on synthetic parts by `indus train demo`). A checkout without it falls back to the tiny random
Qwen3-VL, which exercises every path of the station but whose verdicts are not detections, and says so.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from station.audit.store import AuditDB
from station.camera.simulator import CameraSimulator, generated_parts
from station.camera.zmq_source import CameraConfig
from station.config import AuditConfig, HttpConfig, ModelConfig, ProductRecipe, StationConfig
from station.daemon import Station
from station.models import DEMO_MODEL_DIR, resolve_model, shipped_demo_model
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator

TINY_NOTICE = (
    "The embedded default model is the tiny RANDOM Qwen3-VL: it runs every path of the station, but its "
    "verdicts are not detections (a random model writes no valid answer: every part is a fail-safe reject)."
)
SYNTH_CATEGORIES = ("brushed_metal", "woven_fabric", "wood_grain", "hole_plate", "pin_connector", "lag_screw")


def cache_dir() -> Path:
    return Path(os.environ.get("INDUS_CACHE", Path.home() / ".cache" / "indus-station"))


DEMO_NOTICE = (
    "The embedded default model is the 4 M-parameter demo model, trained from random weights on synthetic "
    "parts only (station/models/demo/README.md): it knows the six synthetic categories, not real parts."
)


@dataclass(frozen=True)
class LineSettings:
    """How fast the simulated line runs and what the station allows per part, matched to the model."""

    parts: int = 24
    rate_hz: float = 4.0
    size: int = 192  # side of the generated parts in px
    deadline_ms: float = 5000
    max_new_tokens: int = 48


# The trained demo model reasons in a few hundred tokens per part on the CPU: a slower line, a longer budget,
# and the part size it was trained on. Others (the tiny random model, scripted) answer at once or not at all.
DEMO_MODEL_LINE = LineSettings(parts=12, rate_hz=0.3, size=256, deadline_ms=20000, max_new_tokens=320)
FAST_LINE = LineSettings()


def line_settings(backend: str, model: str | None) -> LineSettings:
    """The line for a model: the demo model's when it is the one that will run (named, or the default)."""
    if backend != "hf":
        return FAST_LINE
    if model is None:
        return DEMO_MODEL_LINE if shipped_demo_model() is not None else FAST_LINE
    return DEMO_MODEL_LINE if model == "demo" or Path(model).resolve() == DEMO_MODEL_DIR else FAST_LINE


def embedded_model() -> tuple[Path, str]:
    """The default model directory and the notice that describes it: the shipped demo model, or the tiny
    random model (built on first use) where the package carries none."""
    from station.backends.hf.tiny import build_tiny_model

    shipped = shipped_demo_model()
    if shipped is not None:
        return shipped, DEMO_NOTICE

    path = cache_dir() / "tiny-qwen3-vl-seed0"
    if not (path / "model.safetensors").is_file():
        build_tiny_model(path, seed=0)
    return path, TINY_NOTICE


def run_demo(
    parts: int | None = None,
    rate_hz: float | None = None,
    seed: int = 0,
    backend: str = "hf",
    model: str | None = None,
    on_progress: Callable[[Station], None] | None = None,
    on_start: Callable[[Station], None] | None = None,
) -> dict:
    """Run ``parts`` parts through the line and return the summary; unset figures follow the model."""
    notice = None
    if model is None:
        if backend != "hf":
            raise ValueError("give --model for a backend other than the embedded default (hf)")
        model_path, notice = embedded_model()
        model = str(model_path)
    elif backend == "hf":
        model = resolve_model(model)
    line = line_settings(backend, model)
    parts = line.parts if parts is None else parts
    rate_hz = line.rate_hz if rate_hz is None else rate_hz
    size, deadline_ms, max_new_tokens = line.size, line.deadline_ms, line.max_new_tokens
    work = Path(tempfile.mkdtemp(prefix="indus-demo-"))
    recipe = ProductRecipe(deadline_ms=deadline_ms, max_new_tokens=max_new_tokens)
    plc = PlcSimulator().start()
    station = None
    try:
        config = StationConfig(
            camera=CameraConfig(endpoint="tcp://127.0.0.1:0", mode="pull"),
            plc=PlcConfig(port=plc.device_path, ack_timeout_s=0.2),
            model=ModelConfig(backend=backend, model=model),
            products=dict.fromkeys(SYNTH_CATEGORIES, recipe),
            audit=AuditConfig(path=work / "audit.db", evidence_dir=work / "evidence"),
            http=HttpConfig(port=0),
        )
        station = Station(config)
        station.start()
        if on_start is not None:
            on_start(station)
        camera = CameraSimulator(
            generated_parts(seed, size),
            endpoint=station.source.endpoint,
            rate_hz=rate_hz,
            truth_path=work / "truth.jsonl",
        )
        started = time.monotonic()
        camera.start(parts)
        while station.stats.verdicts < parts and time.monotonic() - started < parts / rate_hz + 60:
            time.sleep(0.1)
            if on_progress is not None:
                on_progress(station)
        camera.stop()
        station.stop()
        station.join(30)
        station.close()
        elapsed = time.monotonic() - started
        return _summary(station, plc, work, elapsed, notice)
    finally:
        if station is not None:
            station.stop()
        plc.close()


def _summary(station: Station, plc: PlcSimulator, work: Path, elapsed: float, notice: str | None) -> dict:
    truth = {}
    truth_file = work / "truth.jsonl"
    if truth_file.is_file():
        for line in truth_file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            truth[row["part_id"]] = row["label"]
    taken = {v.part_id: v.accept for v in plc.verdicts}
    judged = [(accept, truth[p]) for p, accept in taken.items() if p in truth]
    correct = sum(accept == (label == "good") for accept, label in judged)
    good = [accept for accept, label in judged if label == "good"]
    bad = [not accept for accept, label in judged if label == "defective"]
    rows = AuditDB(work / "audit.db").last(100_000)
    latencies = [
        r["plc_ack_ts"] - r["capture_ts"]
        for r in rows
        if r.get("plc_ack_ts") and r.get("capture_ts") is not None
    ]
    stats = station.stats
    counters = getattr(station.link, "counters", dict)()
    percentile = (
        (lambda q: round(float(np.percentile(latencies, q)) * 1000, 1)) if latencies else (lambda q: None)
    )
    return {
        "model": station.backend.model_id,
        "notice": notice,
        "parts_sent": len(truth),
        "verdicts": stats.verdicts,
        "accepted": stats.decisions.get("accept", 0),
        "rejected": stats.decisions.get("reject", 0),
        "fail_safes": dict(stats.fail_safes),
        "plc_acknowledged": len(taken),
        "plc_duplicates": plc.summary()["duplicates"],
        "accuracy": round(correct / len(judged), 4) if judged else None,
        "balanced_accuracy": round((np.mean(good) + np.mean(bad)) / 2, 4) if good and bad else None,
        "latency_p50_ms": percentile(50),
        "latency_p99_ms": percentile(99),
        "drops": station.source.dropped,
        "plc_retries": counters.get("retries", 0),
        "plc_undelivered": stats.deliveries.get("late", 0) + stats.deliveries.get("failed", 0),
        "seconds": round(elapsed, 2),
        "audit": str(work / "audit.db"),
    }
