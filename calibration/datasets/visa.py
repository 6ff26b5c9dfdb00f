"""VisA (Zou et al. 2022) as distributed in VisA_20220922.tar, read through its one-class split file.

    <root>/split_csv/1cls.csv              object,split,label,image,mask (paths relative to <root>)
    <root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG
    <root>/<object>/Data/Masks/Anomaly/*.png
    <root>/<object>/image_anno.csv         image,label,mask: the defect names, when present

The test split exists only in the CSV (the image folders mix train and test normals), so the folder tree
alone cannot give the benchmark. Mask values are not all 255 (VisA's own conversion script rescales them),
so `read_mask` takes any non-zero pixel as defect.
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path

from calibration.datasets.base import GOOD, DatasetError, DatasetLoader, Sample
from calibration.datasets.files import absent

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
ANOMALY = "anomaly"  # defect name when the object has no image_anno.csv to name it


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    # utf-8-sig: a CSV re-saved by a spreadsheet starts with a byte-order mark that would rename "object".
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = [{key: (value or "").strip() for key, value in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


class VisALoader(DatasetLoader):
    kind = "visa"
    layout = "<root>/split_csv/1cls.csv (object,split,label,image,mask) with paths relative to <root>"
    none_found = f"{SPLIT_CSV} has no test rows"

    @cached_property
    def _rows(self) -> dict[str, list[dict[str, str]]]:
        """The CSV's test rows by object, each list sorted by image path."""
        path = self.root / SPLIT_CSV
        if not path.is_file():
            raise self.layout_error(
                f"no {SPLIT_CSV} (a copy converted to test/{{good,bad}} folders by prepare_data.py is in "
                "MVTec AD layout: open it as mvtec:PATH)"
            )
        header, rows = _read_csv(path)
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"visa: {path} lacks columns {', '.join(missing)}; has {', '.join(header)}")
        by_object: dict[str, list[dict[str, str]]] = {}
        for row in sorted(rows, key=lambda row: row["image"]):
            if row["split"] != "test":
                continue
            if row["label"] not in LABELS:
                raise DatasetError(
                    f"visa: {path}: label {row['label']!r} of {row['image']} is not normal/anomaly"
                )
            by_object.setdefault(row["object"], []).append(row)
        return by_object

    def categories(self) -> list[str]:
        return sorted(self._rows)

    def _defect_names(self, category: str) -> dict[str, str]:
        path = self.root / category / "image_anno.csv"
        if not path.is_file():
            return {}
        header, rows = _read_csv(path)
        if not {"image", "label"} <= set(header):
            raise DatasetError(f"visa: {path} lacks the image and label columns; header: {', '.join(header)}")
        return {row["image"]: row["label"] for row in rows if row["label"]}

    def _load(self, category: str) -> list[Sample]:
        names = self._defect_names(category)
        samples = []
        for row in self._rows[category]:
            label = LABELS[row["label"]]
            samples.append(
                Sample(
                    image=self.root / row["image"],
                    category=category,
                    label=label,
                    defect=names.get(row["image"], ANOMALY) if label else GOOD,
                    mask=self.root / row["mask"] if label and row["mask"] else None,
                    dataset=self.kind,
                )
            )
        missing = absent(p for s in samples for p in (s.image, s.mask))
        if missing:
            raise self.layout_error(
                f"{len(missing)} file(s) listed in {SPLIT_CSV} for {category} are missing, e.g. {missing[0]}"
            )
        return samples
