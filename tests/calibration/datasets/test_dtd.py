"""DTD-Synthetic: test/{good,bad} with masks in ground_truth/bad under either file name."""

from __future__ import annotations

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.dtd import DTDLoader


def dtd(tree) -> None:
    tree.image("Woven_001/train/good/000.png")
    tree.image("Woven_001/test/good/000.png")
    tree.image("Woven_001/test/bad/000.png")
    tree.mask("Woven_001/ground_truth/bad/000.png")  # plain name
    tree.image("Blotchy_099/test/good/000.png")
    tree.image("Blotchy_099/test/bad/000.png")
    tree.image("Blotchy_099/test/bad/001.png")
    tree.mask("Blotchy_099/ground_truth/bad/000_mask.png")  # MVTec-style name
    tree.mask("Blotchy_099/ground_truth/bad/001_mask.png", on=1)


def test_reads_both_mask_names(tree, rel, check_samples) -> None:
    dtd(tree)
    loader = open_dataset(f"dtd:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["Blotchy_099", "Woven_001"]
    assert rel(samples, tree.root) == [
        "Blotchy_099/test/bad/000.png",
        "Blotchy_099/test/bad/001.png",
        "Blotchy_099/test/good/000.png",
        "Woven_001/test/bad/000.png",
        "Woven_001/test/good/000.png",
    ]
    assert [s.defect for s in samples] == ["bad", "bad", "good", "bad", "good"]
    assert [s.mask and s.mask.relative_to(tree.root).as_posix() for s in samples] == [
        "Blotchy_099/ground_truth/bad/000_mask.png",
        "Blotchy_099/ground_truth/bad/001_mask.png",
        None,
        "Woven_001/ground_truth/bad/000.png",
        None,
    ]
    check_samples(samples, "dtd")
    assert len(list(DTDLoader(tree.root, ["Woven_001"]).samples())) == 2


def test_missing_mask_names_both_expected_files(tree) -> None:
    dtd(tree)
    (tree.root / "Woven_001/ground_truth/bad/000.png").unlink()
    with pytest.raises(
        DatasetError,
        match=r"no mask for .*Woven_001/test/bad/000\.png: looked for "
        r".*ground_truth/bad/000\.png or .*ground_truth/bad/000_mask\.png",
    ):
        DTDLoader(tree.root)


def test_wrong_folder(tree) -> None:
    tree.image("Woven_001/good/000.png")
    with pytest.raises(DatasetError, match=r"^dtd: expected <root>/<category>/test/\{good,bad\}"):
        DTDLoader(tree.root)
