"""What the station itself costs per part at line rate: everything between capture and the PLC's ACK but
the model.

Each step runs the real station (real ZeroMQ PULL on loopback, real audit database, real PLC link on a
pty with the PLC simulator answering) with a scripted model that answers at once, fed 1280x1024 RGB raw
frames by a camera sender in its own process (as a camera is), at one frame rate per step. Per rate it
prints the sustained parts/s, drops, end-to-end latency (capture -> PLC ACK) and the station overhead
(end-to-end minus the verdict's model time), read back from the audit database so the benchmark measures
exactly what the station records. Target: overhead p99 under 10 ms at 30 parts/s.

    python benchmarks/station_throughput.py [--rates 10 20 30 45 60] [--seconds 6] [--warmup 10]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from station.audit.store import AuditDB
from station.backends.scripted import ANSWER_GOOD, ScriptedBackend
from station.camera.simulator import CameraSimulator, SimPart
from station.camera.zmq_source import CameraConfig
from station.config import AuditConfig, HttpConfig, ModelConfig, ProductRecipe, StationConfig
from station.daemon import Station
from station.plc.config import PlcConfig
from station.plc.simulator import PlcSimulator

TARGET_P99_MS = 10.0
TARGET_RATE = 30.0
PRODUCT = "bracket"
# Where the overhead goes: spans between the audit row's stamps (model time taken out of "inspect").
STAGES = {
    "transfer": ("capture_ts", "received_ts"),
    "decode": ("received_ts", "decoded_ts"),
    "queue": ("decoded_ts", "inspect_start_ts"),
    "inspect": ("inspect_start_ts", "verdict_ts"),
    "to PLC": ("verdict_ts", "plc_sent_ts"),
    "PLC ACK": ("plc_sent_ts", "plc_ack_ts"),
    "in station": ("received_ts", "plc_ack_ts"),  # the overhead without the camera-to-station transfer
}
MODEL_TIME_IN = ("inspect", "in station")


def _send(
    endpoint: str, rate_hz: float, count: int, height: int, width: int, sent: multiprocessing.Queue
) -> None:
    """The camera, in a process of its own: a sender sharing the station's GIL would measure the GIL."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    parts = (SimPart(PRODUCT, frame, "good", "good", "benchmark") for frame in itertools.cycle(frames))
    sent.put(CameraSimulator(parts, endpoint=endpoint, rate_hz=rate_hz, linger_s=5.0).run(count))


@dataclass
class Step:
    rate: float
    sent: int
    received: int
    acked: int
    drops: int
    retries: int
    sustained: float
    e2e_ms: tuple[float, float]
    overhead_ms: tuple[float, float]
    stages_ms: dict[str, tuple[float, float]]

    @property
    def passed(self) -> bool:
        return (
            self.overhead_ms[1] < TARGET_P99_MS
            and self.drops == 0
            and self.acked == self.sent
            and self.sustained >= 0.95 * self.rate
        )


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)) * 1000, float(np.percentile(values, 99)) * 1000


def run_step(rate: float, seconds: float, warmup: int, height: int, width: int) -> Step:
    work = Path(tempfile.mkdtemp(prefix="indus-bench-"))
    count = warmup + max(1, round(rate * seconds))
    plc = PlcSimulator().start()
    station = None
    try:
        config = StationConfig(
            camera=CameraConfig(endpoint="tcp://127.0.0.1:0", mode="pull"),
            plc=PlcConfig(port=plc.device_path, ack_timeout_s=0.1),
            model=ModelConfig(backend="scripted", model="answer:good"),
            products={PRODUCT: ProductRecipe(deadline_ms=2000)},
            audit=AuditConfig(path=work / "audit.db", evidence_dir=work / "evidence"),
            http=HttpConfig(port=0),
        )
        station = Station(config, backend=ScriptedBackend([ANSWER_GOOD]))
        station.start()
        spawn = multiprocessing.get_context("spawn")
        sent_queue = spawn.Queue()
        sender = spawn.Process(
            target=_send, args=(station.source.endpoint, rate, count, height, width, sent_queue)
        )
        sender.start()
        sent = sent_queue.get(timeout=count / rate + 60)
        sender.join(10)
        end = time.monotonic() + 30
        while station.stats.verdicts < sent and time.monotonic() < end:
            time.sleep(0.05)
        station.stop()
        station.join(30)
        station.close()
        rows = sorted(AuditDB(work / "audit.db").last(1_000_000), key=lambda r: r["seq"])
        measured = [r for r in rows[warmup:] if r["plc_outcome"] == "acked"]
        e2e = [r["plc_ack_ts"] - r["capture_ts"] for r in measured]
        overhead = [t - r["verdict"]["timings"]["model_s"] for t, r in zip(e2e, measured, strict=True)]
        span = measured[-1]["plc_ack_ts"] - measured[0]["capture_ts"] if len(measured) > 1 else 0.0
        return Step(
            rate=rate,
            sent=sent,
            received=station.stats.received,
            acked=station.stats.deliveries.get("acked", 0),
            drops=station.source.dropped + sent - station.stats.received,
            retries=station.link.counters().get("retries", 0),
            sustained=(len(measured) - 1) / span if span > 0 else 0.0,
            e2e_ms=_percentiles(e2e),
            overhead_ms=_percentiles(overhead),
            stages_ms={
                name: _percentiles(
                    [
                        r[end]
                        - r[start]
                        - (r["verdict"]["timings"]["model_s"] if name in MODEL_TIME_IN else 0)
                        for r in measured
                    ]
                )
                for name, (start, end) in STAGES.items()
            },
        )
    finally:
        if station is not None:
            station.stop()
        plc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 30, 45, 60], help="Parts/s.")
    parser.add_argument("--seconds", type=float, default=6.0, help="Measured seconds per rate.")
    parser.add_argument("--warmup", type=int, default=10, help="Parts per rate left out of the statistics.")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()

    console = Console(width=max(Console().width, 150))
    table = Table(
        title=f"Station throughput, {args.width}x{args.height} RGB raw, scripted model "
        f"(target: overhead p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE:.0f} parts/s)"
    )
    for column in (
        "rate/s",
        "sent",
        "acked",
        "sustained/s",
        "drops",
        "e2e p50 ms",
        "e2e p99 ms",
        "overhead p50 ms",
        "overhead p99 ms",
        "PLC retries",
        "result",
    ):
        table.add_column(column, justify="right")
    stages = Table(title="Overhead by stage, p50 / p99 ms (inspect, in station: without the model's time)")
    stages.add_column("rate/s", justify="right")
    for name in STAGES:
        stages.add_column(name, justify="right")
    for rate in args.rates:
        console.print(f"running {rate:g} parts/s ...")
        step = run_step(rate, args.seconds, args.warmup, args.height, args.width)
        stages.add_row(f"{rate:g}", *(f"{p50:.2f} / {p99:.2f}" for p50, p99 in step.stages_ms.values()))
        table.add_row(
            f"{step.rate:g}",
            str(step.sent),
            str(step.acked),
            f"{step.sustained:.1f}",
            str(step.drops),
            f"{step.e2e_ms[0]:.2f}",
            f"{step.e2e_ms[1]:.2f}",
            f"{step.overhead_ms[0]:.2f}",
            f"{step.overhead_ms[1]:.2f}",
            str(step.retries),
            "[green]pass[/]" if step.passed else "[red]FAIL[/]",
        )
    console.print(table)
    console.print(stages)


if __name__ == "__main__":
    main()
