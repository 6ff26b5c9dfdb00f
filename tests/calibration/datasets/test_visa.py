"""VisA: the one-class split CSV decides the test set; masks are binarised whatever their values."""

from __future__ import annotations

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.visa import VisALoader

HEADER = "object,split,label,image,mask\n"


def visa(tree, header: str = HEADER) -> None:
    """Two objects as VisA_20220922.tar ships them; candle's masks hold 1, pcb1's hold 255."""
    rows = []
    for obj, on in (("candle", 1), ("pcb1", 255)):
        for index in range(3):
            normal = f"{obj}/Data/Images/Normal/{index:04d}.JPG"
            tree.image(normal)
            rows.append(f"{obj},{'train' if index == 0 else 'test'},normal,{normal},")
        for index in range(2):
            image = f"{obj}/Data/Images/Anomaly/{index:03d}.JPG"
            mask = f"{obj}/Data/Masks/Anomaly/{index:03d}.png"
            tree.image(image)
            tree.mask(mask, on=on)
            rows.append(f"{obj},test,anomaly,{image},{mask}")
    tree.text(
        "candle/image_anno.csv",
        "image,label,mask\n"
        "candle/Data/Images/Anomaly/000.JPG,chunk of wax missing,candle/Data/Masks/Anomaly/000.png\n"
        'candle/Data/Images/Anomaly/001.JPG,"wax melded out of the candle,weird candle wick",'
        "candle/Data/Masks/Anomaly/001.png\n"
        "candle/Data/Images/Normal/0001.JPG,normal,\n",
    )
    tree.text("split_csv/1cls.csv", header + "\n".join(rows) + "\n")
    tree.text("split_csv/2cls_fewshot.csv", HEADER)
    tree.text("LICENSE-DATASET", "CC BY 4.0")


def test_reads_test_rows_with_defect_names(tree, rel, check_samples) -> None:
    visa(tree)
    loader = open_dataset(f"visa:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["candle", "pcb1"]
    assert rel(samples, tree.root)[:4] == [
        "candle/Data/Images/Anomaly/000.JPG",
        "candle/Data/Images/Anomaly/001.JPG",
        "candle/Data/Images/Normal/0001.JPG",
        "candle/Data/Images/Normal/0002.JPG",
    ]
    assert len(samples) == 8  # the train normals 0000.JPG are not test samples
    assert [s.label for s in samples] == [1, 1, 0, 0] * 2
    assert [s.defect for s in samples] == [
        "chunk of wax missing",
        "wax melded out of the candle,weird candle wick",
        "good",
        "good",
        "anomaly",  # pcb1 has no image_anno.csv
        "anomaly",
        "good",
        "good",
    ]
    assert samples[0].mask == tree.root / "candle/Data/Masks/Anomaly/000.png"
    assert samples[0].load_mask().sum() == 12 == samples[4].load_mask().sum()  # values 1 and 255 alike
    check_samples(samples, "visa")
    assert {s.category for s in VisALoader(tree.root, ["pcb1"]).samples()} == {"pcb1"}


def test_byte_order_mark_in_header(tree) -> None:
    visa(tree, header="\ufeff" + HEADER)
    assert VisALoader(tree.root).categories() == ["candle", "pcb1"]


def test_wrong_and_partial_folders(tree) -> None:
    tree.image("candle/test/good/000.png")
    with pytest.raises(
        DatasetError,
        match=r"^visa: expected <root>/split_csv/1cls\.csv.*no split_csv/1cls\.csv"
        r" .*open it as mvtec:PATH\) \(under .*: candle/\)",
    ):
        VisALoader(tree.root)
    visa(tree)
    (tree.root / "pcb1/Data/Masks/Anomaly/001.png").unlink()
    with pytest.raises(
        DatasetError,
        match=r"1 file.* listed in split_csv/1cls\.csv for pcb1 are missing, e\.g. "
        r".*pcb1/Data/Masks/Anomaly/001\.png",
    ):
        VisALoader(tree.root)
    assert len(list(VisALoader(tree.root, ["candle"]).samples())) == 4


def test_malformed_split_file(tree) -> None:
    tree.text("split_csv/1cls.csv", "object,label,image\ncandle,normal,a.JPG\n")
    with pytest.raises(DatasetError, match="lacks columns split, mask; has object, label, image"):
        VisALoader(tree.root)
    tree.text("split_csv/1cls.csv", HEADER + "candle,test,bad,a.JPG,\n")
    with pytest.raises(DatasetError, match=r"label 'bad' of a\.JPG is not normal/anomaly"):
        VisALoader(tree.root)
    tree.text("split_csv/1cls.csv", HEADER + "candle,train,normal,a.JPG,\n")
    with pytest.raises(DatasetError, match=r"split_csv/1cls\.csv has no test rows"):
        VisALoader(tree.root)
