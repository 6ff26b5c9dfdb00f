"""`indus tools`: the agent's toolkit from the shell, through the same registry the agent calls."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from tools.image import ImageError, load_image, save_image
from tools.prior import PriorStore
from tools.proposal import propose_regions
from tools.registry import ToolContext
from tools.toolkit import default_registry


def _load(path: str):
    try:
        return load_image(path)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def tools() -> None:
    """Run the agent's tools by hand: region proposal, crop, enhance, prior, measure."""


@tools.command("list")
def list_tools() -> None:
    """Print the tool descriptions exactly as the model receives them (JSON, one per line)."""
    for schema in default_registry().schemas():
        click.echo(json.dumps(schema, ensure_ascii=False))


@tools.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--k", default=3, show_default=True, type=click.IntRange(min=1), help="How many regions.")
@click.option(
    "--max-area",
    default=0.0625,
    show_default=True,
    type=click.FloatRange(min=0, max=1, min_open=True),
    help="Largest box, as a fraction of the image area.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def propose(image: str, k: int, max_area: float, as_json: bool) -> None:
    """Propose the most suspicious regions of IMAGE without a model (best first)."""
    frame = _load(image)
    boxes = propose_regions(frame, k=k, max_area=max_area)
    if as_json:
        click.echo(json.dumps({"boxes": [b.to_dict() for b in boxes]}))
        return
    table = Table(title=f"{Path(image).name}: {frame.shape[1]}x{frame.shape[0]}")
    for column in ("rank", "bbox (0-1000)", "bbox_px", "score"):
        table.add_column(column)
    for rank, box in enumerate(boxes, 1):
        table.add_row(str(rank), str(list(box.bbox)), str(list(box.bbox_px)), f"{box.score:.3f}")
    Console().print(table)


@tools.command()
@click.argument("name")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--args", "arguments", default="{}", show_default=True, help="Tool arguments as a JSON object.")
@click.option("--product", help="Product under inspection (the prior tool's default name).")
@click.option("--mm-per-px", type=click.FloatRange(min=0, min_open=True), help="Pixel scale for measure.")
@click.option(
    "--priors",
    "prior_dirs",
    multiple=True,
    type=click.Path(file_okay=True),
    help="Extra prior files or folders (repeatable).",
)
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the observation's images.")
def call(
    name: str,
    image: str,
    arguments: str,
    product: str | None,
    mm_per_px: float | None,
    prior_dirs: tuple[str, ...],
    out: str | None,
) -> None:
    """Call tool NAME on IMAGE as the agent would, and print the observation the model would read."""
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    context = ToolContext(
        frame=_load(image), product=product, priors=PriorStore.default(prior_dirs), mm_per_px=mm_per_px
    )
    observation = default_registry().call(name, args, context)
    click.echo(observation.text)
    if out:
        for i, view in enumerate(observation.images):
            path = Path(out) / f"{observation.tool}_{i}.png"
            save_image(path, view)
            click.echo(f"wrote {path}", err=True)
    if not observation.ok:
        raise SystemExit(1)
