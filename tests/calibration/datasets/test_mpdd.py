"""MPDD: the MVTec AD layout under another kind, so results never mix with MVTec AD's."""

from __future__ import annotations

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.mpdd import MPDDLoader


def test_reads_mpdd_layout(tree, rel, check_samples) -> None:
    tree.image("bracket_black/train/good/000.png")
    tree.image("bracket_black/test/good/000.png")
    tree.image("bracket_black/test/hole/000.png", width=20, height=14)
    tree.mask("bracket_black/ground_truth/hole/000_mask.png", width=20, height=14)
    tree.image("tubes/test/anomalous/000.png")
    tree.mask("tubes/ground_truth/anomalous/000_mask.png")
    tree.image("tubes/test/good/000.png")
    loader = open_dataset(f"mpdd:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["bracket_black", "tubes"]
    assert rel(samples, tree.root) == [
        "bracket_black/test/good/000.png",
        "bracket_black/test/hole/000.png",
        "tubes/test/anomalous/000.png",
        "tubes/test/good/000.png",
    ]
    assert [s.label for s in samples] == [0, 1, 1, 0]
    assert samples[1].mask == tree.root / "bracket_black/ground_truth/hole/000_mask.png"
    check_samples(samples, "mpdd")
    assert [s.image for s in MPDDLoader(tree.root, ["tubes"]).samples()] == [s.image for s in samples[2:]]


def test_wrong_folder_names_mpdd(tree) -> None:
    tree.image("bracket_black/train/good/000.png")
    with pytest.raises(
        DatasetError, match=r"^mpdd: expected .*found no category folder with a test/ directory"
    ):
        MPDDLoader(tree.root)
