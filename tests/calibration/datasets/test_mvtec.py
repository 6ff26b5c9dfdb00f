"""MVTec AD layout: the benchmark as distributed, our `indus synth` output, and the real sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.mvtec import MVTecLoader
from calibration.synth import write_dataset
from tools.image import load_image


def mvtec(tree) -> Path:
    """Two categories as MVTec AD ships them, with the clutter real copies carry."""
    for name in ("000", "001"):
        tree.image(f"bottle/train/good/{name}.png")
        tree.image(f"bottle/test/good/{name}.png")
    tree.image("bottle/test/broken_large/000.png")
    tree.mask("bottle/ground_truth/broken_large/000_mask.png")
    tree.image("bottle/test/contamination/000.png")
    tree.image("bottle/test/contamination/001.png")
    tree.mask("bottle/ground_truth/contamination/000_mask.png", on=1)  # 0/1 masks are binarised too
    tree.mask("bottle/ground_truth/contamination/001_mask.png")
    tree.image("screw/test/good/000.png", width=10, height=20, colour=False)
    tree.image("screw/test/thread_top/000.png", width=10, height=20, colour=False)
    tree.mask("screw/ground_truth/thread_top/000_mask.png", width=10, height=20)
    tree.text("license.txt", "CC BY-NC-SA 4.0")
    tree.text("bottle/test/good/.DS_Store", "")
    tree.image("bottle/test/good/._000.png")  # macOS resource fork unpacked from an archive
    return tree.root


def test_reads_test_split_in_order_with_masks(tree, rel, check_samples) -> None:
    root = mvtec(tree)
    loader = open_dataset(f"mvtec:{root}")
    samples = list(loader.samples())
    assert loader.categories() == ["bottle", "screw"]
    assert rel(samples, root) == [
        "bottle/test/broken_large/000.png",
        "bottle/test/contamination/000.png",
        "bottle/test/contamination/001.png",
        "bottle/test/good/000.png",
        "bottle/test/good/001.png",
        "screw/test/good/000.png",
        "screw/test/thread_top/000.png",
    ]
    assert [s.label for s in samples] == [1, 1, 1, 0, 0, 0, 1]
    assert [s.defect for s in samples] == [
        "broken_large",
        "contamination",
        "contamination",
        "good",
        "good",
        "good",
        "thread_top",
    ]
    assert samples[1].mask == root / "bottle/ground_truth/contamination/000_mask.png"
    assert samples[1].load_mask().sum() == 12  # the 4x3 box of value 1
    assert samples[6].load_mask().shape == (20, 10)
    check_samples(samples, "mvtec")
    assert rel(open_dataset(f"mvtec:{root}").samples(), root) == rel(samples, root)


def test_selects_categories_and_reads_one_category_folder(tree, rel) -> None:
    root = mvtec(tree)
    screw = list(MVTecLoader(root, ["screw"]).samples())
    assert rel(screw, root) == ["screw/test/good/000.png", "screw/test/thread_top/000.png"]
    alone = MVTecLoader(root / "screw")
    assert alone.categories() == ["screw"]
    assert [s.image for s in alone.samples()] == [s.image for s in screw]
    with pytest.raises(DatasetError, match=r"categories not found .*: cable; present: bottle, screw"):
        MVTecLoader(root, ["bottle", "cable"])


def test_missing_ground_truth_folder_means_no_masks(tree) -> None:
    tree.image("pill/test/good/000.png")
    tree.image("pill/test/crack/000.png")
    (sample,) = [s for s in MVTecLoader(tree.root).samples() if s.label]
    assert sample.mask is None and sample.load_mask() is None


def test_wrong_and_partial_folders(tree) -> None:
    root = mvtec(tree)
    with pytest.raises(
        DatasetError,
        match=r"mvtec: expected <root>/<category>/test/<defect>/\*\.png.*"
        r"found no category folder with a test/ directory \(under .*bottle/test",
    ):
        MVTecLoader(root / "bottle" / "test")
    (root / "bottle/ground_truth/contamination/001_mask.png").unlink()
    with pytest.raises(
        DatasetError, match=r"no mask for .*contamination/001\.png: looked for .*001_mask\.png"
    ):
        MVTecLoader(root)
    assert len(list(MVTecLoader(root, ["screw"]).samples())) == 2  # the damage stays in its category
    (root / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty/test holds no <defect>/ folder with images"):
        MVTecLoader(root, ["empty"])


def test_reads_indus_synth_output(tmp_path: Path, check_samples) -> None:
    rows = write_dataset(tmp_path, n=3, seed=0, size=64, categories=["hole_plate", "wood_grain"])
    loader = open_dataset(f"synth:{tmp_path}")
    samples = list(loader.samples())
    test_rows = sorted((r for r in rows if r["split"] == "test"), key=lambda r: r["path"])
    assert loader.categories() == ["hole_plate", "wood_grain"]
    assert [s.image for s in samples] == [tmp_path / r["path"] for r in test_rows]
    assert [s.defect for s in samples] == [r["defect"] for r in test_rows]
    assert [s.mask for s in samples] == [r["mask"] and tmp_path / r["mask"] for r in test_rows]
    check_samples(samples, "synth")
    for sample in samples:
        if sample.mask is not None:
            assert np.array_equal(sample.load_mask(), load_image(sample.mask) > 0)


@pytest.mark.realdata
def test_real_mvtec_ad_sample(realdata: Path, check_samples) -> None:
    loader = open_dataset(f"mvtec:{realdata / 'mvtec_ad'}")
    # The other category folders hold only loose images (saa_assets/), no test split.
    assert loader.categories() == ["bottle"]
    samples = list(loader.samples())
    assert [(s.image.name, s.defect, s.label) for s in samples] == [
        ("002.png", "broken_large", 1),
        ("004.png", "broken_small", 1),
        ("000.png", "contamination", 1),
        ("000.png", "good", 0),
    ]
    assert all(s.mask is None for s in samples)  # this copy has no ground_truth folder
    assert samples[0].load_image().shape == (900, 900, 3)
    check_samples(samples, "mvtec")


@pytest.mark.realdata
def test_real_mvtec_3d_ad_is_refused_as_mvtec_ad(realdata: Path) -> None:
    # Same test/<defect>/ names, but the images sit one level deeper (rgb/, gt/): not silently empty.
    with pytest.raises(DatasetError, match="tire/test holds no <defect>/ folder with images"):
        open_dataset(f"mvtec:{realdata / 'mvtec_3d_ad'}")
