"""`indus calibrate`: set a product's threshold, pixel scale and normalcy prior from the line's own data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from calibration.calibrate import CalibrationError
from calibration.calibrate.priors import calibrate_prior
from calibration.calibrate.recipe import update_recipe
from calibration.calibrate.scale import measure_scale, parse_pattern
from calibration.calibrate.threshold import choose_threshold
from tools.prior import PriorFileError

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_CONFIG = click.Path(exists=True, dir_okay=False, path_type=Path)
_RATE = click.FloatRange(0, 1)


@click.group()
def calibrate() -> None:
    """Calibrate the station from validation runs, checkerboard images and known-good parts."""


@calibrate.command()
@click.option("--run", "run_dir", type=_DIR, required=True, help="An `indus validate` run folder.")
@click.option("--product", required=True, help="The product whose recipe gets the threshold.")
@click.option("--target-escape-rate", type=_RATE, help="Most defective parts that may pass (0-1).")
@click.option("--target-false-reject-rate", type=_RATE, help="Most good parts that may be rejected (0-1).")
@click.option("--category", help="The run's category to calibrate on (default: the product name).")
@click.option("--config", type=_CONFIG, required=True, help="The station YAML to write the threshold into.")
def threshold(
    run_dir: Path,
    product: str,
    target_escape_rate: float | None,
    target_false_reject_rate: float | None,
    category: str | None,
    config: Path,
) -> None:
    """Choose the confidence threshold that meets an escape-rate or false-reject-rate target on a run.

    Fail-safes count as rejects at every threshold. The station YAML keeps its other keys (a .bak copy of the
    original is left beside it; comments are not kept).
    """
    if (target_escape_rate is None) == (target_false_reject_rate is None):
        raise click.UsageError("give exactly one of --target-escape-rate and --target-false-reject-rate")
    target, rate = (
        ("escape_rate", target_escape_rate)
        if target_escape_rate is not None
        else ("false_reject_rate", target_false_reject_rate)
    )
    assert rate is not None  # for the type checker: one of the two is set, checked above
    try:
        choice = choose_threshold(run_dir, category or product, target, rate)
        changes = update_recipe(config, product, {"threshold": choice.threshold})
    except CalibrationError as error:
        raise click.ClickException(str(error)) from error
    escapes = round(choice.escape_rate * choice.defective)
    false_rejects = round(choice.false_reject_rate * choice.good)
    click.echo(
        f"threshold {choice.threshold:.6g} for {product} on {choice.images} images of "
        f"{category or product}: escape rate {choice.escape_rate:.4g} ({escapes} of {choice.defective} "
        f"defective), false-reject rate {choice.false_reject_rate:.4g} ({false_rejects} of {choice.good} "
        f"good); {choice.fail_safes} fail-safe(s) counted as rejects"
    )
    _echo_changes(config, changes)


@calibrate.command()
@click.option("--images", "folder", type=_DIR, required=True, help="Folder of checkerboard images.")
@click.option("--pattern", required=True, help="Inner corners COLSxROWS (squares minus one), e.g. 9x6.")
@click.option("--square-mm", type=click.FloatRange(min=0, min_open=True), required=True, help="Square side.")
@click.option("--distortion", is_flag=True, help="Also fit the camera matrix and distortion coefficients.")
@click.option("--config", type=_CONFIG, help="Station YAML to write mm_per_px into (with --product).")
@click.option("--product", help="The product whose recipe gets mm_per_px (with --config).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the result as JSON.")
def scale(
    folder: Path,
    pattern: str,
    square_mm: float,
    distortion: bool,
    config: Path | None,
    product: str | None,
    out: Path | None,
) -> None:
    """Measure the pixel-to-millimetre scale from checkerboard images lying where the parts lie."""
    if (config is None) != (product is None):
        raise click.UsageError("--config and --product go together")
    try:
        result = measure_scale(folder, parse_pattern(pattern), square_mm, distortion)
        changes = (
            update_recipe(config, product, {"mm_per_px": result["mm_per_px"]}) if config and product else []
        )
    except CalibrationError as error:
        raise click.ClickException(str(error)) from error
    used, skipped = len(result["images"]), len(result["no_board"])
    click.echo(
        f"{result['mm_per_px']:.6g} mm/px ({result['px_per_mm']:.4g} px/mm), "
        f"spread {result['spread_mm_per_px']:.2g} over {used} image(s)"
        + (f"; no board found in {skipped}: {', '.join(result['no_board'])}" if skipped else "")
    )
    if distortion:
        click.echo(f"reprojection error (RMS) {result['distortion']['rms_px']:.3f} px")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")
    if config:
        _echo_changes(config, changes)


@calibrate.command()
@click.option("--good", type=_DIR, required=True, help="Folder of known-good images of the product.")
@click.option("--product", required=True, help="The product (prior name) to calibrate.")
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("priors"),
    show_default=True,
    help="User prior folder (priors.yaml and references/ go there); list it under `priors:` in the config.",
)
@click.option(
    "--kind", type=click.Choice(["object", "texture"]), help="Default: the existing prior's, else object."
)
@click.option(
    "--references", type=click.IntRange(0, 32), default=3, show_default=True, help="Reference images kept."
)
def priors(good: Path, product: str, store: Path, kind: str | None, references: int) -> None:
    """Measure a product's normalcy prior on known-good images and save it in a user prior store."""
    try:
        prior, file, refreshed = calibrate_prior(good, product, store, kind, references)  # type: ignore[arg-type]
    except (CalibrationError, PriorFileError) as error:
        raise click.ClickException(str(error)) from error
    what = "refreshed the measurements of" if refreshed else "created"
    images = prior.measurements["good_images"] if prior.measurements else 0
    click.echo(f"{what} prior {prior.name!r} from {images} good image(s); wrote {file}")
    click.echo(prior.render())


def _echo_changes(config: Path, changes: list[str]) -> None:
    click.echo(f"updated {config} (previous version in {config.name}.bak):")
    for change in changes:
        click.echo(f"  {change}")
