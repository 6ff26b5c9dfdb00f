"""KolektorSDD raw (labels from the masks) and its SDD cut into thirds along the rows."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.kolektor import KolektorSDDLoader, SDDLoader

W = 10


def kolektor(tree) -> None:
    """Tall parts as in KolektorSDD: JPG images, BMP labels, heights that do and do not divide by 3."""
    tree.image("kos01/Part0.jpg", width=W, height=30)
    tree.mask("kos01/Part0_label.bmp", width=W, height=30, box=None)
    tree.image("kos01/Part1.jpg", width=W, height=30)
    tree.mask("kos01/Part1_label.bmp", width=W, height=30, box=(2, 12, 5, 15))  # middle third only
    tree.image("kos02/Part0.jpg", width=W, height=31)
    tree.mask("kos02/Part0_label.bmp", width=W, height=31, box=(0, 18, 3, 22))  # across the 20-row cut
    tree.text("kos02/Thumbs.db", "")


def test_ksdd_labels_whole_images_from_masks(tree, rel, check_samples) -> None:
    kolektor(tree)
    loader = open_dataset(f"ksdd:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["kolektorsdd"]
    assert rel(samples, tree.root) == ["kos01/Part0.jpg", "kos01/Part1.jpg", "kos02/Part0.jpg"]
    assert [(s.label, s.defect, s.region) for s in samples] == [
        (0, "good", None),
        (1, "defect", None),
        (1, "defect", None),
    ]
    assert samples[1].mask == tree.root / "kos01/Part1_label.bmp"
    check_samples(samples, "ksdd")


def test_sdd_cuts_each_image_into_three_row_pieces(tree, check_samples) -> None:
    kolektor(tree)
    samples = list(open_dataset(f"sdd:{tree.root}").samples())
    assert [(s.image.parent.name, s.image.name, s.region, s.label) for s in samples] == [
        ("kos01", "Part0.jpg", (0, 0, W, 10), 0),
        ("kos01", "Part0.jpg", (0, 10, W, 20), 0),
        ("kos01", "Part0.jpg", (0, 20, W, 30), 0),
        ("kos01", "Part1.jpg", (0, 0, W, 10), 0),
        ("kos01", "Part1.jpg", (0, 10, W, 20), 1),
        ("kos01", "Part1.jpg", (0, 20, W, 30), 0),
        # 31 rows: cuts at 31 // 3 = 10 and 62 // 3 = 20, as the papers' preprocessing does.
        ("kos02", "Part0.jpg", (0, 0, W, 10), 0),
        ("kos02", "Part0.jpg", (0, 10, W, 20), 1),
        ("kos02", "Part0.jpg", (0, 20, W, 31), 1),
    ]
    check_samples(samples, "sdd")
    piece = samples[7]
    full = open_dataset(f"ksdd:{tree.root}")
    whole = next(s for s in full.samples() if s.image == piece.image)
    assert np.array_equal(piece.load_image(), whole.load_image()[10:20])
    assert np.array_equal(piece.load_mask(), whole.load_mask()[10:20])
    assert piece.load_mask().sum() == 2 * 3
    assert len({s.key for s in samples}) == len(samples)  # pieces of one file keep distinct cache keys


def test_selection_and_wrong_or_partial_folders(tree) -> None:
    kolektor(tree)
    assert len(list(SDDLoader(tree.root, ["kolektorsdd"]).samples())) == 9
    with pytest.raises(DatasetError, match=r"categories not found .*: sdd; present: kolektorsdd"):
        SDDLoader(tree.root, ["sdd"])
    (tree.root / "kos02/Part0_label.bmp").unlink()
    with pytest.raises(
        DatasetError,
        match=r"^ksdd: expected .*no mask for .*kos02/Part0\.jpg: expected "
        r"Part0_label\.\* beside it",
    ):
        KolektorSDDLoader(tree.root)
    with pytest.raises(
        DatasetError, match=r"^sdd: expected <root>/kosNN/PartK\.jpg .*found no kosNN/ folder"
    ):
        SDDLoader(tree.root / "kos01")
