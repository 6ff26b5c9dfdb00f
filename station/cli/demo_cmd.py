"""`indus demo`: camera simulator -> station -> PLC simulator on this machine, with a summary."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from station.backends import BACKENDS, BackendError


@click.command()
@click.option(
    "--parts", type=click.IntRange(min=1), help="Parts to send (default: 12 with the demo model, else 24)."
)
@click.option(
    "--rate",
    "rate_hz",
    type=click.FloatRange(min=0, min_open=True),
    help="Parts per second (default: 0.3 with the demo model, else 4).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Synthetic parts seed.")
@click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True)
@click.option("--model", help="Model (default: the embedded default model).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress display).")
def demo(
    parts: int | None, rate_hz: float | None, seed: int, backend: str, model: str | None, as_json: bool
) -> None:
    """Run a simulated line: synthetic parts over ZeroMQ, the station, and a PLC on a pty."""
    from station.demo import line_settings, run_demo  # heavy imports only when the demo runs

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]parts"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    )
    total = parts or line_settings(backend, model).parts
    task = progress.add_task("parts", total=total, detail="starting")

    def on_start(station) -> None:
        if station.server is not None and not as_json:
            console.print(f"operator page: {station.server.url}")

    def on_progress(station) -> None:
        s = station.stats
        detail = f"accept {s.decisions.get('accept', 0)}  reject {s.decisions.get('reject', 0)}"
        progress.update(task, completed=s.verdicts, detail=detail)

    try:
        with progress:
            summary = run_demo(
                parts, rate_hz, seed, backend=backend, model=model, on_progress=on_progress, on_start=on_start
            )
    except (BackendError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary))
        return
    table = Table(title="indus demo", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "notice":
            table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict) else str(value))
    out = Console()
    out.print(table)
    if summary["notice"]:
        out.print(f"[yellow]{summary['notice']}[/]")
