"""`indus train demo`: build the station's embedded demo model from nothing but synthetic parts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler

from station.models import DEMO_MODEL_DIR


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML recipe; default: train/configs/demo.yaml, the recipe of the shipped model.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Working folder (overrides out_dir)."
)
@click.option(
    "--ship",
    is_flag=True,
    help=f"Copy the result into the package's demo model folder ({DEMO_MODEL_DIR}), replacing it.",
)
def demo(config_path: Path | None, out: Path | None, ship: bool) -> None:
    """Train the demo model: vision pretraining, Indus-CoT, SFT and GRPO on synthetic parts, each stage
    resumable (run the same command again after an interruption), then validation on unseen parts."""
    from train.config_io import ConfigError
    from train.demo_config import RECIPE, DemoConfig
    from train.demo_trainer import run_demo_training
    from train.demo_trainer import ship as ship_model

    try:
        config = DemoConfig.from_yaml(config_path or RECIPE)
        if out is not None:
            config.out_dir = str(out)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    console = Console()

    def report(stage: str, result: dict) -> None:
        console.print(f"[bold]{stage}[/bold] {json.dumps(result)}")

    # `indus` set the root logger up at start (WARNING unless -v); a run of hours must show its progress, on
    # stderr like every log, and only for this command (the handler leaves with it)
    progress = logging.getLogger("train")
    level, propagate = progress.level, progress.propagate
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    progress.setLevel(logging.INFO)
    progress.addHandler(handler)
    progress.propagate = False
    try:
        final = run_demo_training(config, on_stage=report)
    except ConfigError as exc:  # a finished stage built from other settings: the message says what to delete
        raise click.ClickException(str(exc)) from exc
    finally:
        progress.removeHandler(handler)
        progress.setLevel(level)
        progress.propagate = propagate
    console.print(f"demo model: {final}")
    if ship:
        copied = ship_model(final, DEMO_MODEL_DIR)
        console.print(f"shipped {len(copied)} files to {DEMO_MODEL_DIR}")
