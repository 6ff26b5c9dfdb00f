"""The pixel scale from checkerboards rendered at a known scale: 40 px squares of 0.5 mm are 0.0125 mm/px."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from calibration.calibrate import CalibrationError
from calibration.calibrate.cli import calibrate
from calibration.calibrate.scale import measure_scale, parse_pattern

SQUARE_PX, SQUARE_MM = 40, 0.5
PATTERN = (7, 5)  # inner corners: 8 x 6 squares


def _board(angle_deg: float = 0.0) -> np.ndarray:
    """The board on a white margin, turned by ``angle_deg`` about its centre (turning keeps the scale)."""
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    squares = (np.add.outer(np.arange(rows), np.arange(cols)) % 2 * 255).astype(np.uint8)
    board = np.kron(squares, np.ones((SQUARE_PX, SQUARE_PX), np.uint8))
    image = cv2.copyMakeBorder(board, 80, 80, 80, 80, cv2.BORDER_CONSTANT, value=255)
    h, w = image.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    return cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_CUBIC, borderValue=255)


@pytest.fixture
def boards(tmp_path: Path) -> Path:
    folder = tmp_path / "boards"
    folder.mkdir()
    for name, angle in (("flat", 0.0), ("turned", 7.0), ("other_way", -4.0)):
        cv2.imwrite(str(folder / f"{name}.png"), _board(angle))
    cv2.imwrite(str(folder / "blank.png"), np.full_like(_board(), 200))
    return folder


def test_the_scale_of_rendered_boards_is_the_rendered_one(boards) -> None:
    result = measure_scale(boards, PATTERN, SQUARE_MM, distortion=True)
    assert result["mm_per_px"] == pytest.approx(SQUARE_MM / SQUARE_PX, rel=0.01)
    assert result["px_per_mm"] == pytest.approx(SQUARE_PX / SQUARE_MM, rel=0.01)
    assert [Path(i["image"]).name for i in result["images"]] == ["flat.png", "other_way.png", "turned.png"]
    assert all(i["mm_per_px"] == pytest.approx(0.0125, rel=0.01) for i in result["images"])
    assert [Path(p).name for p in result["no_board"]] == ["blank.png"]
    distortion = result["distortion"]
    assert distortion["rms_px"] < 0.5
    assert np.array(distortion["camera_matrix"]).shape == (3, 3) and len(distortion["dist_coeffs"]) >= 4


def test_no_board_anywhere_and_bad_patterns_are_errors(boards, tmp_path) -> None:
    with pytest.raises(CalibrationError, match="no 9x6 checkerboard found in any of the 4 images"):
        measure_scale(boards, (9, 6), SQUARE_MM, distortion=False)
    with pytest.raises(CalibrationError, match="expected COLSxROWS"):
        parse_pattern("7by5")
    assert parse_pattern(" 7x5 ") == PATTERN
    with pytest.raises(CalibrationError, match="no image in"):
        measure_scale(tmp_path, PATTERN, SQUARE_MM, distortion=False)


def test_the_cli_writes_the_json_and_the_recipe(boards, tmp_path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("model: {backend: scripted, model: 'answer:good'}\n", encoding="utf-8")
    out = tmp_path / "scale.json"
    args = ["scale", "--images", str(boards), "--pattern", "7x5", "--square-mm", "0.5", "--out", str(out)]
    result = CliRunner().invoke(calibrate, [*args, "--config", str(config), "--product", "pins"])
    assert result.exit_code == 0, result.output
    assert (
        "no board found in 1" in result.output
        and "products.pins.mm_per_px: (unset, default None)" in result.output
    )
    written = json.loads(out.read_text(encoding="utf-8"))
    recipe = yaml.safe_load(config.read_text(encoding="utf-8"))["products"]["pins"]
    assert recipe == {"mm_per_px": written["mm_per_px"]}
    assert written["mm_per_px"] == pytest.approx(0.0125, rel=0.01)
    lonely = CliRunner().invoke(calibrate, [*args, "--product", "pins"])
    assert lonely.exit_code == 2 and "--config and --product go together" in lonely.output
