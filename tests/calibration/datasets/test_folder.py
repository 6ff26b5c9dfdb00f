"""Plain folders: good/ and one folder per defect type, optional masks, one or several categories."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.folder import FolderLoader


def frames(tree, prefix: str = "") -> None:
    """Recorded frames as an operator sorts them: nested dates, mixed formats, masks in both places."""
    tree.image(f"{prefix}good/2024-05-01/a.png")
    tree.image(f"{prefix}good/b.JPG")
    tree.image(f"{prefix}scratch/c.bmp")
    tree.mask(f"{prefix}scratch/c_mask.png")  # beside the image
    tree.image(f"{prefix}dent/line2/d.tif")
    tree.mask(f"{prefix}masks/dent/line2/d.png", on=1)  # mirrored under masks/
    tree.image(f"{prefix}dent/e.jpeg")  # no mask at all
    tree.text(f"{prefix}notes.txt", "shift B")


def test_one_category(tree, rel, check_samples) -> None:
    frames(tree)
    loader = open_dataset(f"folder:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["dataset"]  # the root folder's name
    assert rel(samples, tree.root) == [
        "dent/e.jpeg",
        "dent/line2/d.tif",
        "good/2024-05-01/a.png",
        "good/b.JPG",
        "scratch/c.bmp",
    ]
    assert [(s.label, s.defect) for s in samples] == [
        (1, "dent"),
        (1, "dent"),
        (0, "good"),
        (0, "good"),
        (1, "scratch"),
    ]
    assert [s.mask and s.mask.relative_to(tree.root).as_posix() for s in samples] == [
        None,
        "masks/dent/line2/d.png",
        None,
        None,
        "scratch/c_mask.png",
    ]
    check_samples([s for s in samples if s.mask or not s.label], "folder")
    named = FolderLoader(tree.root, ["bracket"])
    assert named.categories() == ["bracket"]
    assert {s.category for s in named.samples()} == {"bracket"}


def test_several_categories(tree, rel) -> None:
    frames(tree, "line_a/")
    frames(tree, "line_b/")
    tree.image("README.png")
    loader = FolderLoader(tree.root)
    assert loader.categories() == ["line_a", "line_b"]
    assert len(list(loader.samples())) == 10
    assert rel(FolderLoader(tree.root, ["line_b"]).samples(), tree.root)[0] == "line_b/dent/e.jpeg"


def test_wrong_and_empty_folders(tree) -> None:
    tree.image("scratch/c.png")
    with pytest.raises(
        DatasetError, match=r"^folder: expected <root>/good/ .*found no good/ folder.* scratch/"
    ):
        FolderLoader(tree.root)
    (tree.root / "good").mkdir()
    with pytest.raises(DatasetError, match=r"categories not found .*: a, b"):
        FolderLoader(tree.root, ["a", "b"])
    (tree.root / "scratch/c.png").unlink()
    with pytest.raises(DatasetError, match="holds no image in good/ or a <defect>/ folder"):
        FolderLoader(tree.root)


@pytest.mark.realdata
def test_real_mvtec_test_folder(realdata: Path, check_samples) -> None:
    loader = open_dataset(f"folder:{realdata / 'mvtec_ad/bottle/test'}", ["bottle"])
    samples = list(loader.samples())
    assert [(s.category, s.defect, s.label) for s in samples] == [
        ("bottle", "broken_large", 1),
        ("bottle", "broken_small", 1),
        ("bottle", "contamination", 1),
        ("bottle", "good", 0),
    ]
    mvtec = open_dataset(f"mvtec:{realdata / 'mvtec_ad'}")
    assert [s.image for s in samples] == [s.image for s in mvtec.samples()]
    check_samples(samples, "folder")
