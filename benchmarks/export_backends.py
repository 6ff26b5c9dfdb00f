"""Torch vs the ONNX export (fp32; int8 with ``--int8``) vs the GGUF export (f16; q8_0 with ``--int8``) of one
checkpoint on this CPU, as ratios against torch, in one run.

Each backend runs in its own child process, so its memory is its own: "peak MiB" is the child's peak RSS
(``ru_maxrss``) minus its RSS after the imports, i.e. weights, sessions and activations, not the libraries.
Time-to-first-token is round 1's prefill; decode tokens/s is over every round's decoding; time-to-verdict is a
forced crop -> enhance -> answer inspection (`export.parity.FORCED_TURNS`), so a random model still takes all
three rounds, each backend keeping its KV cache across them. Every backend sees the same images, resized to
the ONNX export's size, and runs on the same number of threads (``--threads``; on a CPU another job also
uses, fewer threads than cores keeps llama.cpp's spinning thread pool from stalling). The GGUF columns are
skipped, with a note, without llama-cpp-python (the 'gguf' extra) or llama.cpp's converter.

    python benchmarks/export_backends.py [--model DIR] [--int8] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(kind: str, model_dir: Path, export_dir: Path, size: tuple[int, int], threads: int) -> dict:
    """One backend's numbers, in this (child) process."""
    import torch

    from export.parity import ForcedTurn, fit_messages, forced_rounds, run_rounds, synthetic_parts
    from station.backends.hf import HFBackend
    from tools.toolkit import default_registry

    torch.set_num_threads(threads)
    if kind == "onnx":
        from station.backends.onnx import OnnxBackend
    if kind == "gguf":
        from station.backends.gguf import GGUFBackend
    baseline = psutil.Process().memory_info().rss
    turns = ForcedTurn()
    start = time.perf_counter()
    if kind == "torch":
        backend = HFBackend(
            model_dir, device="cpu", dtype="float32", generate_kwargs={"logits_processor": [turns]}
        )
    elif kind == "onnx":
        backend = OnnxBackend(export_dir, threads=threads, logits_processors=[turns])
    else:
        backend = GGUFBackend(export_dir, n_threads=threads, logits_processors=[turns])
    load_s = time.perf_counter() - start
    rounds = forced_rounds(synthetic_parts(1, seed=0)[0][1])
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


def child(kind: str, model_dir: Path, export_dir: Path, size: tuple[int, int], threads: int) -> dict:
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
    command += ["--size", f"{size[0]}x{size[1]}", "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def gguf_missing() -> str | None:
    """Why GGUF cannot be measured here, or None."""
    try:
        from export.gguf import ConverterNotFound, find_converter
    except ImportError as exc:  # llama_cpp is imported lazily; the exporter needs the hf extra
        return str(exc)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed (the 'gguf' extra)"
    try:
        find_converter()
    except ConverterNotFound as exc:
        return str(exc)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Checkpoint (default: the tiny random Qwen3-VL).")
    parser.add_argument("--int8", action="store_true", help="Also int8 ONNX and q8_0 GGUF exports.")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Threads for every backend.")
    parser.add_argument("--worker", choices=["torch", "onnx", "gguf"], help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        size = tuple(int(side) for side in args.size.split("x"))
        print(json.dumps(measure(args.worker, args.model, args.export, size, args.threads)))
        return
    from export.manifest import Manifest
    from export.onnx import export_onnx
    from station.backends.hf.tiny import build_tiny_model

    console = Console()
    missing = gguf_missing()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_model(Path(tmp) / "tiny", seed=0)
        exports: dict[str, tuple[str, Path]] = {}  # column -> (backend, export directory)
        for quant, column in [("none", "onnx fp32"), ("int8", "onnx int8")][: 2 if args.int8 else 1]:
            export_onnx(model_dir, Path(tmp) / column, quant=quant)
            exports[column] = ("onnx", Path(tmp) / column)
        if missing is None:
            from export.gguf import export_gguf

            for quant in ["f16", "q8_0"][: 2 if args.int8 else 1]:
                export_gguf(model_dir, Path(tmp) / f"gguf-{quant}", quant)
                exports[f"gguf {quant}"] = ("gguf", Path(tmp) / f"gguf-{quant}")
        onnx_dir = exports["onnx fp32"][1]
        size = tuple(Manifest.read(onnx_dir).extra["image_size"])
        results = {"torch fp32": child("torch", model_dir, onnx_dir, size, args.threads)}
        for column, (kind, out) in exports.items():
            results[column] = child(kind, model_dir, out, size, args.threads)
    reference = results["torch fp32"]
    title = f"{model_dir if args.model else 'tiny Qwen3-VL'} on CPU ({psutil.cpu_count()} cores"
    table = Table(title=f"{title}, {args.threads} threads; images {size[0]}x{size[1]})")
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
    console.print(table)
    if missing is not None:
        console.print(f"GGUF (llama.cpp) not measured: {missing}")


if __name__ == "__main__":
    main()
