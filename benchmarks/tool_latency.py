"""Per-tool latency on a 2048x2048 frame, pinned to one core: median and p99 per call, against 20 ms.

Every call goes through the registry, as the agent makes it (argument validation and observation included).

    python benchmarks/tool_latency.py [--repeats 200] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from tools.prior import PriorStore
from tools.proposal import propose_regions
from tools.registry import ToolContext
from tools.toolkit import default_registry

TARGET_MS = 20.0


def industrial_frame(size: int, seed: int = 0) -> np.ndarray:
    """A textured plate with a scratch and a faint stain: realistic work for proposal and enhancement."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 3)
    base = 130 + 25 * noise / noise.std() + np.linspace(-15, 15, size)[None, :]
    frame = np.clip(base, 0, 255).astype(np.uint8)
    cv2.line(frame, (size // 3, size // 2), (size // 2, size // 2 + size // 10), 60, 3, cv2.LINE_AA)
    cv2.circle(frame, (3 * size // 4, size // 4), size // 30, 122, -1)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)


def time_calls(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up: lazy loads, allocator
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), float(np.percentile(samples, 99))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)

    frame = industrial_frame(args.size)
    registry = default_registry()
    lexical = ToolContext(frame=frame, product="bottle", priors=PriorStore.default(embedder="lexical"))
    cases = {
        "propose_regions (k=3)": lambda: propose_regions(frame, k=3),
        "crop, model box": lambda: registry.call("crop", {"bbox": [300, 400, 420, 520]}, lexical),
        "crop, no box (proposal)": lambda: registry.call("crop", {}, lexical),
        "enhance clahe, frame": lambda: registry.call("enhance", {"mode": "clahe"}, lexical),
        "enhance edges, frame": lambda: registry.call("enhance", {"mode": "edges"}, lexical),
        "enhance highpass, frame": lambda: registry.call("enhance", {"mode": "highpass"}, lexical),
        "enhance clahe, region": lambda: registry.call("enhance", {"bbox": [300, 400, 420, 520]}, lexical),
        "prior, known name": lambda: registry.call("prior", {"name": "metal-nut"}, lexical),
        "prior, unknown (lexical)": lambda: registry.call("prior", {"name": "circuit boards"}, lexical),
        "measure spacing, 8 boxes": lambda: registry.call(
            "measure",
            {"operation": "spacing", "items": [[100 + 100 * i, 400, 140 + 100 * i, 480] for i in range(8)]},
            lexical,
        ),
    }
    try:
        semantic = ToolContext(frame=frame, product="bottle", priors=PriorStore.default(embedder="minilm"))
        cases["prior, unknown (MiniLM)"] = lambda: registry.call(
            "prior", {"name": "circuit boards"}, semantic
        )
    except Exception as exc:  # the embed extra is optional
        Console().print(f"[yellow]MiniLM prior lookup skipped: {exc}[/]")

    table = Table(title=f"Tool latency, {args.size}x{args.size} RGB frame, 1 core, {args.repeats} calls each")
    for column in ("tool call", "median ms", "p99 ms", f"p99 < {TARGET_MS:.0f} ms"):
        table.add_column(column, justify="right" if column != "tool call" else "left")
    for name, fn in cases.items():
        median, p99 = time_calls(fn, args.repeats)
        table.add_row(name, f"{median:.2f}", f"{p99:.2f}", "yes" if p99 < TARGET_MS else "[red]NO[/]")
    Console().print(table)


if __name__ == "__main__":
    main()
