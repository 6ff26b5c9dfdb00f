"""The synthetic-parts generator: layout, determinism, exact masks, known geometry and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from calibration.synth import CATEGORIES, generate_part, write_dataset
from calibration.synth.cli import synth
from calibration.synth.dataset import META_FILE
from tools.image import load_image, to_gray

PAIRS = [(category, defect) for category, defects in CATEGORIES.items() for defect in defects]
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("synth")
    return out, write_dataset(out, n=4, seed=0, size=128, categories=list(CATEGORIES))


def _twins(category: str, defect: str, seed: int, size: int = 256):
    """The same part drawn from the same generator state, good and with ``defect``."""
    good = generate_part(category, None, size, np.random.default_rng(seed))
    bad = generate_part(category, defect, size, np.random.default_rng(seed))
    return good, bad


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_categories_table() -> None:
    assert set(CATEGORIES) == {
        "brushed_metal",
        "woven_fabric",
        "wood_grain",
        "hole_plate",
        "pin_connector",
        "lag_screw",
    }
    for defects in CATEGORIES.values():
        assert 2 <= len(defects) <= 4
    every = {defect for defects in CATEGORIES.values() for defect in defects}
    assert {"scratch", "crack", "stain", "missing_pin", "shifted_pin", "bent_pin", "missing_hole"} <= every


def test_layout_and_counts(small_run: tuple[Path, list[dict]]) -> None:
    out, rows = small_run
    assert len(rows) == len(CATEGORIES) * 8
    assert [json.loads(line) for line in (out / META_FILE).read_text().splitlines()] == rows
    for category, defects in CATEGORIES.items():
        root = out / category
        assert len(list((root / "train" / "good").glob("*.png"))) == 4
        assert sorted(p.name for p in (root / "test" / "good").iterdir()) == ["000.png", "001.png"]
        defect_dirs = [d for d in (root / "test").iterdir() if d.name != "good"]
        assert {d.name for d in defect_dirs} <= set(defects)
        assert sum(len(list(d.glob("*.png"))) for d in defect_dirs) == 2
        for d in defect_dirs:
            masks = sorted(p.name for p in (root / "ground_truth" / d.name).iterdir())
            assert masks == sorted(p.stem + "_mask.png" for p in d.iterdir())
    for row in rows:
        image = load_image(out / row["path"])
        assert image.shape == (128, 128, 3)
        assert row["size"] == [128, 128]
        assert row["label"] == ("good" if row["defect"] == "good" else "defective")
        assert (row["mask"] is None) == (row["label"] == "good")


def test_masks_binary_and_nonempty(small_run: tuple[Path, list[dict]]) -> None:
    out, rows = small_run
    for row in rows:
        if row["mask"] is None:
            continue
        mask = load_image(out / row["mask"])
        assert mask.shape == (128, 128)
        assert set(np.unique(mask).tolist()) == {0, 255}
        assert (mask > 0).sum() == row["geometry"]["change"]["area_px"]


def test_deterministic_and_seed_sensitive(tmp_path: Path) -> None:
    args = {"n": 2, "size": 96, "categories": list(CATEGORIES)}
    write_dataset(tmp_path / "a", seed=5, **args)
    write_dataset(tmp_path / "b", seed=5, **args)
    rows = write_dataset(tmp_path / "c", seed=6, **args)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert first == second
    images = [row["path"] for row in rows]
    assert all(first[path] != other[path] for path in images)


def test_single_image_regenerates_from_its_seed(small_run: tuple[Path, list[dict]]) -> None:
    out, rows = small_run
    for row in rows[:: len(rows) // 8]:
        part = generate_part(row["category"], row["defect"], 128, np.random.default_rng(row["seed"]))
        assert np.array_equal(part.image, load_image(out / row["path"]))


def test_good_parts_vary() -> None:
    for category in CATEGORIES:
        a = generate_part(category, None, 128, np.random.default_rng(0)).image
        b = generate_part(category, None, 128, np.random.default_rng(1)).image
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, category


@pytest.mark.parametrize(("category", "defect"), PAIRS)
def test_mask_is_exactly_what_the_defect_changed(category: str, defect: str) -> None:
    for seed in SEEDS:
        good, bad = _twins(category, defect, seed)
        mask = bad.mask > 0
        assert not good.mask.any() and good.defect is None and bad.defect == defect
        assert 0.001 < mask.mean() < 0.06, "defect area outside 0.1%-6% of the frame"
        changed = (good.image != bad.image).any(axis=2)
        grown = cv2.dilate(bad.mask, np.ones((5, 5), np.uint8)) > 0
        assert (changed & grown).sum() >= 0.95 * changed.sum()
        assert (changed & mask).sum() >= 0.5 * mask.sum(), "most of the mask must actually differ"


@pytest.mark.parametrize("category", [c for c, defects in CATEGORIES.items() if "stain" in defects])
def test_stain_is_low_contrast(category: str) -> None:
    for seed in SEEDS:
        good, bad = _twins(category, "stain", seed)
        inside = bad.mask > 0
        diff = np.abs(to_gray(good.image).astype(float) - to_gray(bad.image).astype(float))[inside].mean()
        assert 1.5 < diff < 10


def _centres(boxes: list[list[float]]) -> np.ndarray:
    return np.array([(b[0] + b[2]) / 2 for b in boxes])


def test_pin_geometry() -> None:
    for seed in SEEDS:
        good = generate_part("pin_connector", None, 256, np.random.default_rng(seed)).geometry
        pitch = good["pitch_px"]
        assert np.allclose(np.diff(_centres(good["pins"])), pitch, atol=0.02)
        missing = generate_part("pin_connector", "missing_pin", 256, np.random.default_rng(seed)).geometry
        assert len(missing["pins"]) == len(good["pins"]) - 1
        index = missing["change"]["index"]
        assert missing["change"]["box"] == good["pins"][index]
        shifted = generate_part("pin_connector", "shifted_pin", 256, np.random.default_rng(seed)).geometry
        index, (dx, dy) = shifted["change"]["index"], shifted["change"]["shift_px"]
        moved = _centres(shifted["pins"]) - _centres(good["pins"])
        assert moved[index] == pytest.approx(dx, abs=0.02) and dy == 0
        assert np.allclose(np.delete(moved, index), 0)
        assert abs(dx) >= 0.2 * pitch


def test_pin_boxes_cover_the_drawn_pins() -> None:
    part = generate_part("pin_connector", None, 256, np.random.default_rng(3))
    gold = part.image.astype(int)
    yellow = (gold[..., 0] - gold[..., 2]) > 60
    for x1, y1, x2, y2 in part.geometry["pins"]:
        inner = yellow[int(y1) + 3 : int(y2) - 3, int(x1) + 2 : int(x2) - 1]
        assert inner.mean() > 0.8
        assert not yellow[int(y1) : int(y2), int(x2) + 3 : int(x2) + 6].any()


def test_hole_geometry() -> None:
    for seed in SEEDS:
        good = generate_part("hole_plate", None, 256, np.random.default_rng(seed)).geometry
        holes, (px, py) = np.array(good["holes"]), good["pitch_px"]
        cols, rows = good["grid"]
        grid = holes[:, :2].reshape(rows, cols, 2)
        assert np.allclose(np.diff(grid[:, :, 0], axis=1), px, atol=0.02)
        assert np.allclose(np.diff(grid[:, :, 1], axis=0), py, atol=0.02)
        image = generate_part("hole_plate", None, 256, np.random.default_rng(seed)).image
        for cx, cy, _ in holes:
            assert to_gray(image)[round(cy), round(cx)] < 60, "hole centres are dark"
        for defect, delta in (("missing_hole", -1), ("extra_hole", 1), ("wrong_spacing", 0)):
            geometry = generate_part("hole_plate", defect, 256, np.random.default_rng(seed)).geometry
            assert len(geometry["holes"]) == len(holes) + delta


def test_screw_geometry() -> None:
    for seed in SEEDS:
        part = generate_part("lag_screw", None, 256, np.random.default_rng(seed))
        (x1, y1), (x2, y2) = part.geometry["axis"]
        assert 0 < part.geometry["thread_pitch_px"] < 20
        assert all(0 <= v < 256 for v in (x1, y1, x2, y2))
        direction = np.array([x2 - x1, y2 - y1]) / np.hypot(x2 - x1, y2 - y1)
        for point in part.geometry["thread_span"]:
            offset = np.array(point) - (x1, y1)
            assert abs(offset[0] * direction[1] - offset[1] * direction[0]) < 0.05, (
                "thread span lies on the axis"
            )
        broken = generate_part("lag_screw", "missing_thread", 256, np.random.default_rng(seed)).geometry[
            "change"
        ]
        assert broken["turns"] >= 3


def test_generate_part_rejects_bad_requests() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown category"):
        generate_part("teapot", None, 128, rng)
    with pytest.raises(ValueError, match="no defect"):
        generate_part("lag_screw", "missing_pin", 128, rng)
    with pytest.raises(ValueError, match="at least 64"):
        generate_part("lag_screw", None, 32, rng)


def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        synth,
        [
            "--out",
            str(tmp_path),
            "--n",
            "2",
            "--seed",
            "3",
            "--size",
            "64",
            "--categories",
            "lag_screw,hole_plate",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train good" in result.output and "hole_plate" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hole_plate", "lag_screw", META_FILE]
    assert len((tmp_path / META_FILE).read_text().splitlines()) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n"),
        (["--n", "2", "--size", "32"], "--size"),
        (["--n", "2", "--categories", "lag_screw,teapot"], "unknown teapot"),
        (["--n", "2", "--categories", ","], "at least one category"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(synth, ["--out", str(tmp_path / "out"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_cli_rejects_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = CliRunner().invoke(synth, ["--out", str(target), "--n", "1"])
    assert result.exit_code != 0
    assert "is a file" in result.output
