"""`indus train`: build training data and train the inspection agent."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from calibration.datasets import DatasetError, open_dataset
from train.cot import build_trajectories


@click.group()
def train() -> None:
    """Training: Indus-CoT trajectories, SFT, GRPO."""


def _run_stage(stage: str, config_path: Path) -> None:
    """Load a stage's YAML config and run it; heavy imports only here, so `indus --help` stays fast."""
    from train.config_io import ConfigError

    try:
        if stage == "sft":
            from train.sft_config import SFTRunConfig
            from train.sft_trainer import run_sft

            out = run_sft(SFTRunConfig.from_yaml(config_path))
        else:
            from train.grpo_config import GRPORunConfig
            from train.grpo_trainer import run_grpo

            out = run_grpo(GRPORunConfig.from_yaml(config_path))
    except (ConfigError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{stage}: wrote {out}")


@train.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def sft(config_path: Path) -> None:
    """Supervised fine-tuning on an Indus-CoT folder with TRL's SFTTrainer (LoRA or full), loss only on the
    assistant's reasoning, tool calls and answers; fields in train/sft_config.py."""
    _run_stage("sft", config_path)


@train.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def grpo(config_path: Path) -> None:
    """GRPO with TRL's GRPOTrainer: rollouts run the real tools on each sample's image, rewarded by the
    accuracy-gated reward (train/rewards.py); fields in train/grpo_config.py."""
    _run_stage("grpo", config_path)


@train.command()
@click.option(
    "--dataset", required=True, help="Labelled images, KIND:PATH (e.g. synth:parts, realiad:/data)."
)
@click.option("--categories", help="Comma-separated subset of the dataset's categories.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="New folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--balance", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Fraction of good parts."
)
@click.option(
    "--total", type=click.IntRange(min=2), help="Trajectories to write (default: as many as balance allows)."
)
@click.option("--max-per-category", type=click.IntRange(min=2), help="Cap per category.")
@click.option(
    "--exclude",
    multiple=True,
    help="Evaluation categories to keep out (repeatable; default: MVTec AD, VisA, MPDD, DTD-Synthetic, SDD).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
def cot(
    dataset: str,
    categories: str | None,
    out: Path,
    seed: int,
    balance: float,
    total: int | None,
    max_per_category: int | None,
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write Indus-CoT trajectories with the programmatic teacher: real tool calls on each image, the
    answer from its label, curated, balanced, and with the evaluation benchmarks' categories removed."""
    selected = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    try:
        samples = open_dataset(dataset, selected).samples()
        report = build_trajectories(
            samples,
            out,
            seed=seed,
            balance=balance,
            total=total,
            max_per_category=max_per_category,
            exclude_categories=list(exclude) or None,
        )
    except (DatasetError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(asdict(report)))
        return
    table = Table(title=f"Indus-CoT in {out}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("trajectories", str(report.written))
    table.add_row("good / defective", f"{report.good} / {report.defective}")
    table.add_row("direct answers (no tool)", str(report.direct_answers))
    table.add_row("tool calls", json.dumps(report.tool_calls))
    table.add_row(
        "removed as benchmark leakage", json.dumps({k: v.get("count") for k, v in report.leaks.items()})
    )
    table.add_row("dropped by curation", str(len(report.rejected)))
    Console().print(table)
