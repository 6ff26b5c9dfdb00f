"""KolektorSDD2: <id>.png with <id>_GT.png in test/, labelled by the GT mask."""

from __future__ import annotations

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.kolektorsdd2 import KolektorSDD2Loader


def ksdd2(tree) -> None:
    tree.image("train/10000.png")
    tree.mask("train/10000_GT.png")
    tree.image("test/10001.png", width=8, height=20)
    tree.mask("test/10001_GT.png", width=8, height=20, box=None)
    tree.image("test/10002.png", width=8, height=20)
    tree.mask("test/10002_GT.png", width=8, height=20)
    tree.image("test/20000.png", width=8, height=20)
    tree.mask("test/20000_GT.png", width=8, height=20, on=1)


def test_reads_test_split(tree, rel, check_samples) -> None:
    ksdd2(tree)
    loader = open_dataset(f"ksdd2:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["kolektorsdd2"]
    assert rel(samples, tree.root) == ["test/10001.png", "test/10002.png", "test/20000.png"]
    assert [(s.label, s.defect) for s in samples] == [(0, "good"), (1, "defect"), (1, "defect")]
    assert samples[1].mask == tree.root / "test/10002_GT.png"
    check_samples(samples, "ksdd2")
    # Pointed at the split folder itself, the same samples.
    assert [s.image for s in KolektorSDD2Loader(tree.root / "test").samples()] == [s.image for s in samples]


def test_wrong_and_partial_folders(tree) -> None:
    ksdd2(tree)
    with pytest.raises(DatasetError, match=r"categories not found .*: ksdd2; present: kolektorsdd2"):
        KolektorSDD2Loader(tree.root, ["ksdd2"])
    (tree.root / "test/10002_GT.png").unlink()
    with pytest.raises(DatasetError, match=r"^ksdd2: expected .*no mask for .*10002\.png: expected 10002_GT"):
        KolektorSDD2Loader(tree.root)
    (tree.root / "empty").mkdir()
    with pytest.raises(
        DatasetError, match=r"found no <id>\.png image with its <id>_GT\.png \(under .*: nothing"
    ):
        KolektorSDD2Loader(tree.root / "empty")
