"""`indus inspect`: run the agent on image files and print one verdict per image."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from station.agent import Agent
from station.agent_config import AgentConfig
from station.cli.options import ModelChoice, agent_options, model_options
from station.verdict import Verdict
from tools.image import ImageError, load_image
from tools.prior import PriorStore


def _table(rows: list[tuple[str, Verdict]]) -> Table:
    table = Table(title=f"{len(rows)} part(s)")
    for column in (
        "image",
        "decision",
        "anomaly",
        "type",
        "confidence",
        "tools",
        "seconds",
        "fail-safe reason",
    ):
        table.add_column(column, justify="right" if column in ("confidence", "tools", "seconds") else "left")
    for name, v in rows:
        colour = "red" if v.rejected else "green"
        table.add_row(
            name,
            f"[{colour}]{v.decision}[/]",
            {True: "yes", False: "no", None: "-"}[v.anomaly],
            v.type or "-",
            "-" if v.confidence is None else f"{v.confidence:.3f} ({v.confidence_source})",
            str(v.tool_calls),
            f"{v.timings.total_s:.3f}",
            v.reason or "",
        )
    return table


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@model_options()
@click.option("--product", help="Product or category under inspection (selects the normalcy prior).")
@agent_options
@click.option("--json", "as_json", is_flag=True, help="One verdict per line as JSON, with the full trace.")
def inspect(
    images: tuple[str, ...],
    model_choice: ModelChoice,
    product: str | None,
    agent_config: AgentConfig,
    prior_dirs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Inspect IMAGES with the agent and print a verdict for each (a fail-safe reject when anything fails)."""
    model_backend = model_choice.load()
    agent = Agent(model_backend, agent_config, priors=PriorStore.default(prior_dirs))
    rows = []
    try:
        for path in images:
            try:
                frame = load_image(path)
            except ImageError as exc:
                verdict = agent.fail_safe("corrupt_frame", str(exc), part_id=path, product=product)
            else:
                verdict = agent.inspect(frame, product, part_id=path)
            if as_json:
                click.echo(verdict.model_dump_json())
            rows.append((Path(path).name, verdict))
    finally:
        agent.close()
        model_backend.close()
    if not as_json:
        Console().print(_table(rows))
