"""MVTec AD 2: the public test split, with ground truth inside it that must not become a defect type."""

from __future__ import annotations

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.mvtec2 import MVTec2Loader


def mvtec2(tree) -> None:
    for category in ("can", "vial"):
        tree.image(f"{category}/train/good/000_regular.png")
        tree.image(f"{category}/validation/good/000_regular.png")
        tree.image(f"{category}/test_public/good/000_regular.png")
        tree.image(f"{category}/test_public/good/000_overexposed.png")
        tree.image(f"{category}/test_public/bad/001_regular.png")
        tree.mask(f"{category}/test_public/ground_truth/bad/001_regular_mask.png")
        tree.image(f"{category}/test_private/002_regular.png")
        tree.image(f"{category}/test_private_mixed/003_regular.png")


def test_reads_test_public(tree, rel, check_samples) -> None:
    mvtec2(tree)
    loader = open_dataset(f"mvtec2:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["can", "vial"]
    assert rel(samples, tree.root)[:3] == [
        "can/test_public/bad/001_regular.png",
        "can/test_public/good/000_overexposed.png",
        "can/test_public/good/000_regular.png",
    ]
    assert len(samples) == 6
    assert {s.defect for s in samples} == {"bad", "good"}
    assert samples[0].mask == tree.root / "can/test_public/ground_truth/bad/001_regular_mask.png"
    check_samples(samples, "mvtec2")
    assert {s.category for s in MVTec2Loader(tree.root, ["vial"]).samples()} == {"vial"}


def test_wrong_and_partial_folders(tree) -> None:
    mvtec2(tree)
    with pytest.raises(
        DatasetError, match=r"^mvtec2: expected .*found no category folder with a test_public/"
    ):
        MVTec2Loader(tree.root / "can" / "test_public")
    assert MVTec2Loader(tree.root / "can").categories() == ["can"]
    with pytest.raises(DatasetError, match=r"^mvtec: expected .*found no category folder with a test/"):
        open_dataset(f"mvtec:{tree.root}")  # MVTec AD 2 is not MVTec AD
    (tree.root / "vial/test_public/ground_truth/bad/001_regular_mask.png").unlink()
    with pytest.raises(
        DatasetError, match=r"looked for .*test_public/ground_truth/bad/001_regular_mask\.png"
    ):
        MVTec2Loader(tree.root)
