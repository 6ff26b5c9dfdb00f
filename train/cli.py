"""`indus train`: build training data and train the inspection agent."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from calibration.datasets import DatasetError, open_dataset
from station.agent_config import AgentConfig
from station.backends import BACKENDS, Backend, BackendError
from station.cli.options import ModelChoice, agent_options, model_options
from tools.prior import PriorStore
from train.cot import ProgrammaticTeacher, Teacher, build_trajectories
from train.cot.dataset import CURATION_FILE
from train.cot.model_teacher import HINT_MODES, JUDGE_TIMEOUT_S, HintMode, Judge, ModelTeacher
from train.cot.teacher import STYLES
from train.demo_cli import demo


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
@click.option(
    "--teacher",
    "teacher_kind",
    type=click.Choice(["programmatic", "model"]),
    default="programmatic",
    show_default=True,
    help="Who writes the trajectories: from the labels, or a model (--backend, --model) in the agent loop.",
)
@click.option(
    "--style",
    type=click.Choice(STYLES),
    default=None,
    help="Programmatic teacher's wording: rich (varied, quotes tool numbers; the default) or terse (one "
    "phrasing, no numbers beyond the defect box: for small models trained on a CPU).",
)
@model_options(required=False)
@agent_options
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=2,
    show_default=True,
    help="Rejected attempts a sample may cost before it is dropped (model teacher).",
)
@click.option(
    "--candidates",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Curated trajectories per sample for the judge to choose from (needs sampling: --temperature).",
)
@click.option(
    "--hints",
    type=click.Choice(HINT_MODES),
    default="feedback",
    show_default=True,
    help="What a retry's request adds: what went wrong, the label as well, or nothing (never a box; never "
    "stored).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    help="Sampling temperature of an openai teacher (default: the backend's, greedy).",
)
@click.option(
    "--min-type-similarity",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="How close the teacher's defect name must be to the label's (1: equal up to case and separators).",
)
@click.option(
    "--box-check/--no-box-check",
    default=True,
    show_default=True,
    help="A defective part's answered box must touch its mask.",
)
@click.option("--judge-model", help="LLM-as-judge scoring each candidate 1-10 (model teacher).")
@click.option(
    "--judge-backend", type=click.Choice(BACKENDS), help="The judge's backend (default: --backend)."
)
@click.option("--judge-base-url", help="The judge's server (default: --base-url).")
@click.option(
    "--min-judge-score",
    type=click.FloatRange(1, 10),
    help="Reject candidates the judge scores below this (unscored ones are kept).",
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
    teacher_kind: str,
    style: str | None,
    model_choice: ModelChoice,
    agent_config: AgentConfig,
    prior_dirs: tuple[str, ...],
    retries: int,
    candidates: int,
    hints: HintMode,
    temperature: float | None,
    min_type_similarity: float,
    box_check: bool,
    judge_model: str | None,
    judge_backend: str | None,
    judge_base_url: str | None,
    min_judge_score: float | None,
    as_json: bool,
) -> None:
    """Write Indus-CoT trajectories, curated, balanced, and with the evaluation benchmarks' categories
    removed. The programmatic teacher runs the real tools on each image and answers from its label; the
    model teacher (--teacher model) runs the station's agent loop with a model that sees only the image and
    the request, keeps trajectories whose answer agrees with the label, retries the rest with a correction
    hint and, with --judge-model, keeps the best-judged candidate."""
    selected = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    model_only = {
        "--model": model_choice.model,
        "--judge-model": judge_model,
        "--temperature": temperature,
        "--min-judge-score": min_judge_score,
    }
    if teacher_kind == "model" and style is not None:
        raise click.UsageError("--style applies to the programmatic teacher")
    if teacher_kind == "programmatic" and any(v is not None for v in model_only.values()):
        given = ", ".join(k for k, v in model_only.items() if v is not None)
        raise click.UsageError(f"{given} need(s) --teacher model")
    if min_judge_score is not None and judge_model is None:
        raise click.UsageError("--min-judge-score needs --judge-model")
    if teacher_kind == "model" and not model_choice.model:
        raise click.UsageError("--teacher model needs --model (and --backend, --base-url for a server)")
    if temperature is not None and model_choice.backend != "openai":
        raise click.UsageError("--temperature applies to the openai backend")
    backends: list[Backend] = []
    teacher: Teacher | None = None
    try:
        samples = open_dataset(dataset, selected).samples()
        if teacher_kind == "model":
            teacher = _model_teacher(
                model_choice,
                agent_config,
                prior_dirs,
                backends,
                retries=retries,
                candidates=candidates,
                hints=hints,
                temperature=temperature,
                min_type_similarity=min_type_similarity,
                require_box_hit=box_check,
                judge=ModelChoice(
                    judge_backend or model_choice.backend,
                    judge_model,
                    None,
                    model_choice.device,
                    judge_base_url or model_choice.base_url,
                )
                if judge_model
                else None,
                min_judge_score=min_judge_score,
            )
        else:
            teacher = ProgrammaticTeacher(
                priors=PriorStore.default(prior_dirs, embedder="lexical"), style=style or "rich"
            )
        report = build_trajectories(
            samples,
            out,
            seed=seed,
            balance=balance,
            total=total,
            max_per_category=max_per_category,
            exclude_categories=list(exclude) or None,
            teacher=teacher,
        )
    except (DatasetError, FileExistsError, ValueError, BackendError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if isinstance(teacher, ModelTeacher):
            teacher.close()
        for backend in backends:
            backend.close()
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
    if report.curation:
        figures = report.curation
        table.add_row("teacher", str(report.teacher.get("model")))
        table.add_row("samples tried / attempts", f"{figures['samples']} / {figures['attempts']}")
        table.add_row(
            "kept at first try / after a retry", f"{figures['kept_first_try']} / {figures['recovered']}"
        )
        table.add_row("dropped after all retries", str(figures["dropped"]))
        table.add_row("kept, but cut to keep the balance", str(figures["kept_not_written"]))
        table.add_row("malformed attempts", str(figures["malformed"]))
        table.add_row("rejected attempts by reason", json.dumps(figures["rejections"]))
        judge = figures["judge"]
        if report.teacher.get("judge"):
            mean = "-" if judge["mean_kept"] is None else f"{judge['mean_kept']:.2f}"
            table.add_row(
                "judge: scored / failed / mean kept", f"{judge['scored']} / {judge['failed']} / {mean}"
            )
    Console().print(table)
    if report.curation:
        click.echo(f"per-sample curation: {out / CURATION_FILE}")


def _model_teacher(
    choice: ModelChoice,
    config: AgentConfig,
    prior_dirs: tuple[str, ...],
    backends: list[Backend],
    *,
    temperature: float | None,
    judge: ModelChoice | None,
    **options: Any,
) -> ModelTeacher:
    """Load the teacher (and judge) backends, appending each to ``backends`` so the caller closes them."""
    teacher_backend = choice.load()
    backends.append(teacher_backend)
    if temperature is not None:  # the openai backend reads it per request
        teacher_backend.temperature = temperature  # type: ignore[attr-defined]
    elif options.get("candidates", 1) > 1:
        click.echo("warning: --candidates > 1 without --temperature gives the judge identical ones", err=True)
    judge_backend = judge.load() if judge is not None else None
    if judge_backend is not None:
        backends.append(judge_backend)
    judge_s = max(JUDGE_TIMEOUT_S, config.deadline_s)
    for backend in backends:
        # A big model's reply may take most of the inspection's deadline: the openai backend's own request
        # timeout (60 s, made for the edge) must not cut it shorter.
        if backend.name == "openai":
            backend.timeout_s = max(backend.timeout_s, judge_s)  # type: ignore[attr-defined]
    return ModelTeacher(
        teacher_backend,
        judge=Judge(judge_backend, timeout_s=judge_s) if judge_backend is not None else None,
        config=config,
        priors=PriorStore.default(prior_dirs, embedder="lexical"),
        **options,
    )


train.add_command(demo)
