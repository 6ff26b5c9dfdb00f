"""Real-IAD: the split json picks the test entries; images at whichever resolution was downloaded."""

from __future__ import annotations

import json

import pytest

from calibration.datasets import DatasetError, open_dataset
from calibration.datasets.realiad import RealIADLoader

OK = "OK/S0001/audiojack_0001_OK_C1_20231021125427.jpg"
OK2 = "OK/S0001/audiojack_0001_OK_C2_20231021125427.jpg"
HS = "NG/HS/S0023/audiojack_0023_NG_HS_C1_20231021130312.jpg"
XX = "NG/XX/S0024/audiojack_0024_NG_XX_C3_20231021130359.jpg"


def entry(path: str, code: str, mask: bool = False) -> dict:
    return {
        "category": "audiojack",
        "anomaly_class": code,
        "image_path": path,
        "mask_path": path.replace(".jpg", ".png") if mask else None,
    }


def realiad(tree, jsons: str = "realiad_jsons/realiad_jsons", res: str = "realiad_512") -> None:
    """One category with images and one whose archive was not unpacked, as the official zips give."""
    for path in (OK, OK2, HS, XX):
        tree.image(f"{res}/audiojack/{path}")
    tree.mask(f"{res}/audiojack/{HS.replace('.jpg', '.png')}")
    tree.mask(f"{res}/audiojack/{XX.replace('.jpg', '.png')}", on=1)
    split = {
        "meta": {"prefix": "audiojack", "normal_class": "OK"},
        "train": [entry(OK2, "OK")],
        "test": [entry(XX, "XX", mask=True), entry(OK2, "OK"), entry(HS, "HS", mask=True), entry(OK, "OK")],
    }
    tree.text(f"{jsons}/audiojack.json", json.dumps(split))
    tree.text(f"{jsons}/toy.json", json.dumps({"meta": {}, "train": [], "test": [entry(OK, "OK")]}))
    tree.text("realiad_jsons/realiad_jsons_sv/audiojack.json", "{}")  # single-view variant, not read


def test_reads_test_split(tree, rel, check_samples) -> None:
    realiad(tree)
    loader = open_dataset(f"realiad:{tree.root}")
    samples = list(loader.samples())
    assert loader.categories() == ["audiojack"]  # toy has a json but no image folder
    assert rel(samples, tree.root / "realiad_512/audiojack") == [HS, XX, OK, OK2]
    assert [(s.label, s.defect) for s in samples] == [(1, "scratch"), (1, "XX"), (0, "good"), (0, "good")]
    assert samples[0].mask == tree.root / "realiad_512/audiojack" / HS.replace(".jpg", ".png")
    check_samples(samples, "realiad")


def test_flat_json_folder_and_resolution_choice(tree, rel) -> None:
    realiad(tree, jsons="realiad_jsons", res="realiad_256")
    realiad(tree, jsons="realiad_jsons", res="realiad_1024")
    loader = RealIADLoader(tree.root, ["audiojack"])
    assert loader.image_dir == tree.root / "realiad_1024"
    assert len(rel(loader.samples(), tree.root / "realiad_1024/audiojack")) == 4


def test_wrong_and_partial_folders(tree) -> None:
    tree.image("realiad_512/audiojack/" + OK)
    with pytest.raises(
        DatasetError,
        match=r"^realiad: expected <root>/realiad_jsons/<category>\.json .*"
        r"\(<res> one of 1024, 512, 256, raw\); found no realiad_jsons/\*\.json",
    ):
        RealIADLoader(tree.root)
    realiad(tree)
    with pytest.raises(DatasetError, match=r"categories not found .*: toy; present: audiojack"):
        RealIADLoader(tree.root, ["toy"])
    (tree.root / "realiad_512/audiojack" / HS).unlink()
    with pytest.raises(DatasetError, match=r"1 file\(s\) listed in audiojack\.json are missing .*S0023"):
        RealIADLoader(tree.root)
    tree.text("realiad_jsons/realiad_jsons/audiojack.json", json.dumps({"train": []}))
    with pytest.raises(DatasetError, match=r"audiojack\.json is not a Real-IAD split file: KeyError"):
        RealIADLoader(tree.root)


def test_missing_image_folder(tree) -> None:
    tree.text("realiad_jsons/audiojack.json", "{}")
    with pytest.raises(DatasetError, match="found none of the image folders realiad_1024, realiad_512"):
        RealIADLoader(tree.root)
