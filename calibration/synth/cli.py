"""`indus synth`: write a deterministic synthetic inspection dataset (MVTec AD layout) to a folder.

Lets the station, the tools and the training loop be exercised end to end, with exact masks and known
geometry, on a machine that has no real parts and no licence for the real benchmark.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from calibration.synth.dataset import META_FILE, write_dataset
from calibration.synth.parts import CATEGORIES

_COLUMNS = (("train", "good"), ("test", "good"), ("test", "defective"))


def _categories(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    if value is None:
        return list(CATEGORIES)
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one category")
    unknown = [name for name in names if name not in CATEGORIES]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(CATEGORIES)}")
    return list(dict.fromkeys(names))


@click.command(help="Write synthetic industrial parts, good and defective, in MVTec AD layout.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, dir_okay=True, writable=True, path_type=Path),
    help="Output folder (created if missing).",
)
@click.option(
    "--n",
    required=True,
    type=click.IntRange(min=1),
    help="Images per category in train/good, and again in test (about half good, half defective).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Run seed.")
@click.option(
    "--size", default=256, show_default=True, type=click.IntRange(64, 2048), help="Image side in px."
)
@click.option(
    "--categories",
    callback=_categories,
    help=f"Comma-separated subset of: {', '.join(CATEGORIES)} (default: all).",
)
def synth(out: Path, n: int, seed: int, size: int, categories: list[str]) -> None:
    started = time.perf_counter()
    try:
        rows = write_dataset(out, n, seed, size, categories)
    except OSError as error:  # e.g. a parent of --out is a file, or the disk is full
        raise click.ClickException(f"cannot write {out}: {error}") from error
    counts = Counter((row["category"], row["split"], row["label"]) for row in rows)
    table = Table(title=f"synthetic parts in {out}")
    table.add_column("category")
    for split, label in _COLUMNS:
        table.add_column(f"{split} {label}", justify="right")
    for category in categories:
        table.add_row(category, *(str(counts[category, split, label]) for split, label in _COLUMNS))
    console = Console()
    console.print(table)
    console.print(
        f"{len(rows)} images in {time.perf_counter() - started:.1f} s; metadata in {out / META_FILE}"
    )
