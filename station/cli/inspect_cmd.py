"""`indus inspect`: run the agent on image files and print one verdict per image."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends import BACKENDS, BackendError, load_backend
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
@click.option(
    "--model", required=True, help="Model directory (hf), server model name (openai) or script (scripted)."
)
@click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True)
@click.option("--product", help="Product or category under inspection (selects the normalcy prior).")
@click.option(
    "--adapter", type=click.Path(file_okay=False), help="LoRA adapter directory on top of --model (hf)."
)
@click.option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (openai).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (hf).")
@click.option(
    "--deadline", "deadline_s", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True
)
@click.option("--max-tool-calls", type=click.IntRange(0, 64), default=6, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1, 32768), default=512, show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option(
    "--priors", "prior_dirs", multiple=True, type=click.Path(), help="Extra prior files or folders."
)
@click.option("--mm-per-px", type=click.FloatRange(min=0, min_open=True), help="Pixel scale for measure.")
@click.option("--json", "as_json", is_flag=True, help="One verdict per line as JSON, with the full trace.")
def inspect(
    images: tuple[str, ...],
    model: str,
    backend: str,
    product: str | None,
    adapter: str | None,
    base_url: str | None,
    device: str,
    deadline_s: float,
    max_tool_calls: int,
    max_new_tokens: int,
    threshold: float,
    prior_dirs: tuple[str, ...],
    mm_per_px: float | None,
    as_json: bool,
) -> None:
    """Inspect IMAGES with the agent and print a verdict for each (a fail-safe reject when anything fails)."""
    config = AgentConfig(
        deadline_s=deadline_s,
        max_tool_calls=max_tool_calls,
        max_new_tokens=max_new_tokens,
        threshold=threshold,
        mm_per_px=mm_per_px,
    )
    try:
        model_backend = load_backend(backend, model, adapter=adapter, device=device, base_url=base_url)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from exc
    agent = Agent(model_backend, config, priors=PriorStore.default(prior_dirs))
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
