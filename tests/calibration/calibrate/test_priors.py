"""Priors measured on synthetic good parts, saved to a user store and read back through the `prior` tool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from calibration.calibrate.cli import calibrate
from calibration.calibrate.priors import measure_image
from calibration.synth import generate_part
from tools.image import save_image
from tools.prior import PriorStore
from tools.registry import ToolContext
from tools.toolkit import default_registry


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for seed in range(4):
        save_image(
            folder / f"{seed:03d}.png",
            generate_part("hole_plate", None, 96, np.random.default_rng(seed)).image,
        )
    return folder


def _prior_text(store: Path, name: str) -> str:
    observation = default_registry().call(
        "prior",
        {"name": name},
        ToolContext(frame=np.zeros((8, 8, 3), np.uint8), priors=PriorStore.default([store])),
    )
    assert observation.ok, observation.error
    return observation.data["prior"]


def test_statistics_of_known_images() -> None:
    stripes = np.zeros((64, 64), np.uint8)
    stripes[::8] = 255  # horizontal lines
    lines = measure_image(stripes)
    assert lines["orientation_deg"] == pytest.approx(0, abs=1) or lines["orientation_deg"] == pytest.approx(
        180, abs=1
    )
    assert lines["orientation_coherence"] > 0.95 and lines["width_px"] == 64
    square = np.full((100, 100, 3), 30, np.uint8)
    square[25:75, 25:75] = (200, 40, 40)  # a red part on a dark background
    part = measure_image(square)
    assert part["foreground_fraction"] == pytest.approx(0.25)
    assert part["colour_rgb"] == pytest.approx([30 + 170 / 4, 30 + 10 / 4, 30 + 10 / 4])


def test_a_new_product_gets_measured_text_measurements_and_references(good, tmp_path) -> None:
    store = tmp_path / "priors"
    result = CliRunner().invoke(
        calibrate, ["priors", "--good", str(good), "--product", "widget", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert "created prior 'widget' from 4 good image(s)" in result.output
    text = _prior_text(store, "widget")
    assert "Measured from 4 good images" in text and "of a 96x96 px frame" in text
    assert "Measured on good parts: good_images=4, width_px.mean=96, width_px.std=0" in text
    assert "foreground_fraction.mean=" in text and "orientation_deg.mean=" in text
    [prior] = yaml.safe_load((store / "priors.yaml").read_text(encoding="utf-8"))["priors"]
    assert prior["kind"] == "object" and prior["measurements"]["good_images"] == 4
    assert prior["reference_images"] == [
        "references/widget/00_000.png",
        "references/widget/01_002.png",
        "references/widget/02_003.png",
    ]
    assert all((store / image).is_file() for image in prior["reference_images"])


def test_a_shipped_prior_keeps_its_text_and_gains_measurements(good, tmp_path) -> None:
    store = tmp_path / "priors"
    shipped = PriorStore.default().lookup("hole_plate").prior
    args = [
        "priors",
        "--good",
        str(good),
        "--product",
        "hole_plate",
        "--store",
        str(store),
        "--references",
        "1",
    ]
    result = CliRunner().invoke(calibrate, args)
    assert result.exit_code == 0, result.output
    assert "refreshed the measurements of prior 'hole_plate'" in result.output
    refreshed = PriorStore.default([store]).lookup("hole_plate").prior
    assert refreshed.model_dump(exclude={"measurements", "reference_images"}) == shipped.model_dump(
        exclude={"measurements", "reference_images"}
    )
    assert refreshed.measurements["good_images"] == 4 and len(refreshed.reference_images) == 1
    assert "Measured on good parts: good_images=4" in _prior_text(store, "hole_plate")
    again = CliRunner().invoke(calibrate, [*args[:-1], "2"])  # a second run refreshes, it does not stack
    assert again.exit_code == 0, again.output
    assert len(list((store / "references" / "hole_plate").iterdir())) == 2
    assert len(yaml.safe_load((store / "priors.yaml").read_text(encoding="utf-8"))["priors"]) == 1


def test_an_empty_folder_is_an_error(tmp_path) -> None:
    result = CliRunner().invoke(
        calibrate, ["priors", "--good", str(tmp_path), "--product", "widget", "--store", str(tmp_path / "p")]
    )
    assert result.exit_code == 1 and "no image in" in result.output
