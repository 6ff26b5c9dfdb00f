"""`indus validate`: re-validate the station offline on a benchmark, or compare two such runs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from calibration.datasets import DatasetError
from calibration.metrics.summary import HEADLINE, cell
from calibration.validate.compare import CompareError, compare_runs, print_comparison
from calibration.validate.results import RESULTS_FILE
from calibration.validate.runner import OUTPUTS, RunMismatch, RunSpec, ValidationRun
from station.agent_config import AgentConfig
from station.cli.options import ModelChoice, agent_options, model_options

# The figures the terminal has room for; the report and metrics.json have them all.
TERMINAL = (
    "images",
    "classification.balanced_accuracy",
    "classification.recall",
    "classification.false_reject_rate",
    "ranking.auroc",
    "localization.iou",
    "fail_safes.count",
    "latency.p50_s",
)


def _categories(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one category")
    return names


@click.command()
@click.option("--dataset", help="KIND:PATH, e.g. mvtec:/data/mvtec_ad or synth:parts.")
@click.option("--categories", callback=_categories, help="Comma-separated subset (default: all present).")
@model_options(required=False)
@agent_options
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder (created if missing)."
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images, in dataset order.")
@click.option("--restart", is_flag=True, help="Discard the results already in --out and start over.")
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="RUN_A RUN_B",
    help="Compare two finished runs instead of running; with --out, also write compare.json there.",
)
@click.option("--json", "as_json", is_flag=True, help="With --compare: print the comparison as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def validate(
    dataset: str | None,
    categories: list[str] | None,
    model_choice: ModelChoice,
    agent_config: AgentConfig,
    prior_dirs: tuple[str, ...],
    out: Path | None,
    limit: int | None,
    restart: bool,
    compare: tuple[Path, Path] | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Run the station's agent over a benchmark and report how it does, resumably.

    Results are cached per image in OUT/results.jsonl: run the same command again after an interruption
    and it continues where it stopped. Writes metrics.json, metrics.csv and report.html to OUT.
    """
    if compare:
        _compare(*compare, out=out, as_json=as_json)
        return
    if as_json:
        raise click.UsageError("--json goes with --compare; a run writes its figures to OUT/metrics.json")
    missing = [
        name
        for name, value in (("--dataset", dataset), ("--model", model_choice.model), ("--out", out))
        if not value
    ]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or give --compare RUN_A RUN_B)")
    assert dataset and model_choice.model and out  # for the type checker: checked just above
    try:
        spec = RunSpec.create(
            dataset,
            backend=model_choice.backend,
            model=model_choice.resolved_model,
            categories=categories,
            adapter=model_choice.adapter,
            priors=prior_dirs,
            agent=agent_config,
        )
        run = ValidationRun(out, spec, restart=restart)
    except (ValueError, RunMismatch) as error:
        raise click.ClickException(str(error)) from error
    model_backend = model_choice.load()
    console = Console()
    try:
        inspection = run.inspect(model_backend, limit=limit, progress=not no_progress)
    except DatasetError as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        console.print(
            f"interrupted; finished images are in {out / RESULTS_FILE}: run the same command to continue"
        )
        raise SystemExit(130) from None
    finally:
        model_backend.close()
    console.print(_summary_table(run.report(inspection.results)))
    earlier = len(inspection.results) - inspection.inspected
    written = ", ".join(str(out / name) for name in OUTPUTS)
    console.print(f"{inspection.inspected} image(s) inspected, {earlier} from earlier runs; wrote {written}")


def _summary_table(metrics: dict) -> Table:
    labels = dict(HEADLINE)
    table = Table(title=f"{metrics['run']['spec']['model']} on {metrics['run']['spec']['dataset']}")
    table.add_column("scope", overflow="fold")
    for key in TERMINAL:
        table.add_column(labels[key], justify="right")
    scopes = [("overall", metrics["overall"]), ("category mean", metrics["category_mean"])]
    for name, scope in [*scopes, *metrics["categories"].items()]:
        cells = [cell(scope, key) for key in TERMINAL]
        table.add_row(
            name, *(f"{value}\n[dim]{interval}[/]" if interval else value for value, interval in cells)
        )
    return table


def _compare(a: Path, b: Path, *, out: Path | None, as_json: bool) -> None:
    try:
        comparison = compare_runs(a, b)
    except CompareError as error:
        raise click.ClickException(str(error)) from error
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(comparison, indent=2))
    else:
        print_comparison(comparison, Console())
