"""`indus model`: model checkpoints for the station (for now, the tiny random one tests build on)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def model() -> None:
    """Model checkpoints: build the tiny random Qwen3-VL used by tests."""


@model.command()
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
def tiny(out: Path, seed: int) -> None:
    """Write a tiny RANDOM Qwen3-VL checkpoint (for tests; it cannot inspect anything)."""
    try:  # torch only when this command runs
        from station.backends.hf.tiny import NOTICE, build_tiny_model
    except ImportError as exc:
        raise click.ClickException(f"this command needs torch and transformers: {exc}") from exc

    path = build_tiny_model(out, seed=seed)
    size = sum(f.stat().st_size for f in path.iterdir())
    click.echo(f"wrote {path} ({size / 1e6:.1f} MB, seed {seed})")
    click.echo(NOTICE)
