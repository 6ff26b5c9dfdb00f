"""Training throughput of both stages on the tiny random Qwen3-VL, on this machine's CPU.

Builds a small synthetic dataset and an Indus-CoT set from it in a temporary folder, then times a few
optimizer steps of SFT (`run_sft`; the trainer's own ``train_runtime``, so model loading is left out) and of
GRPO (`build_trainer`, then `train()` timed alone). GRPO rollouts are mostly generation: a random policy
rarely writes a tool call, so each rollout samples up to ``--completion-tokens`` tokens. The numbers say what
the plumbing costs per sample, not what an 8B model does on a GPU.

    python benchmarks/training_throughput.py [--sft-steps 8] [--grpo-steps 2] [--completion-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from calibration.datasets import open_dataset
from calibration.synth import write_dataset
from station.backends.hf.tiny import build_tiny_model
from train.cot import build_trajectories
from train.grpo_config import GRPORunConfig
from train.grpo_trainer import build_trainer
from train.sft_config import SFTRunConfig
from train.sft_trainer import STATE_FILE, run_sft


@dataclass
class Measurement:
    stage: str
    unit: str
    steps: int
    items: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def prepare(root: Path) -> tuple[Path, Path, Path]:
    """The tiny model, a synthetic dataset (64 px parts) and an Indus-CoT set built from it."""
    model_dir = build_tiny_model(root / "tiny-qwen3-vl", seed=0)
    write_dataset(root / "synth", n=4, seed=0, size=64)
    samples = list(open_dataset(f"synth:{root / 'synth'}").samples())
    build_trajectories(samples, root / "cot", seed=0, total=8)
    return model_dir, root / "synth", root / "cot"


def measure_sft(model_dir: Path, cot_dir: Path, out: Path, steps: int, batch: int) -> Measurement:
    """Full fine-tuning, ``batch`` trajectories per step; time from the trainer's own ``train_runtime``."""
    config = SFTRunConfig(
        model_dir=str(model_dir),
        dataset_dir=str(cot_dir),
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
        use_cpu=True,
        logging_steps=steps,
        save_steps=steps + 1,  # no checkpoint-N inside the timed run
    )
    state = json.loads((run_sft(config) / STATE_FILE).read_text(encoding="utf-8"))
    runtime = next(row["train_runtime"] for row in state["log_history"] if "train_runtime" in row)
    return Measurement("SFT", "samples", steps, steps * batch, runtime)


def measure_grpo(
    model_dir: Path, synth_dir: Path, out: Path, steps: int, batch: int, generations: int, tokens: int
) -> Measurement:
    """``batch`` rollouts (``batch / generations`` images) per step; `train()` timed, loading left out."""
    config = GRPORunConfig.from_dict(
        {
            "model_dir": str(model_dir),
            "dataset": f"synth:{synth_dir}",
            "output_dir": str(out),
            "limit": 8,
            "num_generations": generations,
            "per_device_train_batch_size": batch,
            "max_steps": steps,
            "max_completion_length": tokens,
            "max_tool_calling_iterations": 2,
            "use_cpu": True,
            "logging_steps": steps,
            "reward": {"embedder": "lexical"},
        }
    )
    trainer = build_trainer(config)
    started = time.perf_counter()
    trainer.train()
    return Measurement("GRPO", "rollouts", steps, steps * batch, time.perf_counter() - started)


def main() -> None:
    """Parse the options, measure both stages and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sft-steps", type=int, default=8)
    parser.add_argument("--sft-batch", type=int, default=2)
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--grpo-batch", type=int, default=4)
    parser.add_argument("--grpo-generations", type=int, default=2)
    parser.add_argument("--completion-tokens", type=int, default=64)
    args = parser.parse_args()

    console = Console()
    with tempfile.TemporaryDirectory(prefix="training-throughput-") as tmp:
        root = Path(tmp)
        model_dir, synth_dir, cot_dir = prepare(root)
        results = [
            measure_sft(model_dir, cot_dir, root / "sft", args.sft_steps, args.sft_batch),
            measure_grpo(
                model_dir,
                synth_dir,
                root / "grpo",
                args.grpo_steps,
                args.grpo_batch,
                args.grpo_generations,
                args.completion_tokens,
            ),
        ]

    table = Table(title=f"Training throughput, tiny Qwen3-VL on CPU ({torch.get_num_threads()} threads)")
    for column in ("stage", "steps", "samples / rollouts", "seconds", "steps/s", "per second", "threads"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for m in results:
        table.add_row(
            m.stage,
            str(m.steps),
            f"{m.items} {m.unit}",
            f"{m.seconds:.2f}",
            f"{m.steps_per_second:.2f}",
            f"{m.per_second:.2f} {m.unit}/s",
            str(torch.get_num_threads()),
        )
    console.print(table)
    console.print(
        f"SFT: full fine-tuning, batch {args.sft_batch}; GRPO: G={args.grpo_generations}, "
        f"batch {args.grpo_batch}, up to {args.completion_tokens} completion tokens per rollout."
    )


if __name__ == "__main__":
    main()
