"""Torch vs the ONNX export (fp32, int8 with ``--int8``) of one checkpoint on this CPU.

Each backend runs in its own child process, so its memory is its own: "peak MiB" is the child's peak RSS
(``ru_maxrss``) minus its RSS after the imports, i.e. weights, sessions and activations, not torch itself.
Time-to-first-token is round 1's prefill; decode tokens/s is over every round's decoding; time-to-verdict is a
forced crop -> enhance -> answer inspection (`export.parity.FORCED_TURNS`), so a random model still takes all
three rounds. Images are resized to the export's size for torch too.

    python benchmarks/export_backends.py [--model DIR] [--int8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table


def measure(kind: str, model_dir: Path, export_dir: Path) -> dict[str, float]:
    """One backend's numbers, in this (child) process."""
    from export.manifest import Manifest
    from export.parity import ForcedTurn, fit_messages, forced_rounds, run_rounds, synthetic_parts
    from station.backends.hf import HFBackend
    from station.backends.onnx import OnnxBackend
    from tools.toolkit import default_registry

    baseline = psutil.Process().memory_info().rss
    turns = ForcedTurn()
    start = time.perf_counter()
    if kind == "torch":
        backend = HFBackend(
            model_dir, device="cpu", dtype="float32", generate_kwargs={"logits_processor": [turns]}
        )
    else:
        backend = OnnxBackend(export_dir, logits_processors=[turns])
    load_s = time.perf_counter() - start
    size = tuple(Manifest.read(export_dir).extra["image_size"]) if kind == "torch" else None
    rounds = forced_rounds(synthetic_parts(1, seed=0)[0][1])
    if size is not None:
        rounds = [(fit_messages(messages, size), turn) for messages, turn in rounds]
    tools = default_registry().schemas()
    run_rounds(backend, turns, rounds, tools)  # warm-up: first-call allocations are not the steady state
    start = time.perf_counter()
    generations = [g for g, _ in run_rounds(backend, turns, rounds, tools)]
    verdict_s = time.perf_counter() - start
    return {
        "load_s": load_s,
        "ttft_s": generations[0].prefill_s,
        "decode_tps": sum(g.generated_tokens for g in generations) / sum(g.decode_s for g in generations),
        "verdict_s": verdict_s,
        "peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline) / 2**20,
    }


def child(kind: str, model_dir: Path, export_dir: Path) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model",
        str(model_dir),
        "--export",
        str(export_dir),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the tiny random Qwen3-VL).")
    parser.add_argument("--int8", action="store_true", help="Also export and time an int8 ONNX model.")
    parser.add_argument("--worker", choices=["torch", "onnx"], help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.model, args.export)))
        return
    from export.onnx import export_onnx
    from station.backends.hf.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_model(Path(tmp) / "tiny", seed=0)
        quants = ["none", "int8"] if args.int8 else ["none"]
        exports = {q: Path(tmp) / q for q in quants}
        for quant, out in exports.items():
            export_onnx(model_dir, out, quant=quant)
        results = {"torch fp32": child("torch", model_dir, exports["none"])}
        for quant, out in exports.items():
            results[f"onnx {'fp32' if quant == 'none' else quant}"] = child("onnx", model_dir, out)
    reference = results["torch fp32"]
    table = Table(title=f"{model_dir if args.model else 'tiny Qwen3-VL'} on CPU ({psutil.cpu_count()} cores)")
    columns = (
        ("load s", "load_s", "{:.2f}"),
        ("TTFT ms", "ttft_s", "{:.1f}", 1000),
        ("decode tok/s", "decode_tps", "{:.0f}"),
        ("verdict ms (3 rounds)", "verdict_s", "{:.0f}", 1000),
        ("peak MiB", "peak_mib", "{:.0f}"),
    )
    table.add_column("backend")
    for name, *_ in columns:
        table.add_column(f"{name} (x torch)", justify="right")
    for backend, row in results.items():
        cells = []
        for _, key, fmt, *scale in columns:
            value = row[key] * (scale[0] if scale else 1)
            ratio = row[key] / reference[key] if reference[key] else np.nan
            cells.append(f"{fmt.format(value)} ({ratio:.2f})")
        table.add_row(backend, *cells)
    console = Console()
    console.print(table)
    console.print("GGUF (llama.cpp): not built yet, so not measured.")


if __name__ == "__main__":
    main()
