"""Real-IAD (Wang et al. 2024), read through its split files, at whichever resolution was downloaded.

    <root>/realiad_jsons/<category>.json      (the official zip unpacks to realiad_jsons/realiad_jsons/)
    <root>/realiad_<res>/<category>/OK/Sxxxx/*.jpg
    <root>/realiad_<res>/<category>/NG/<code>/Sxxxx/*.jpg with *.png masks beside them

Each json holds ``meta`` (``normal_class`` "OK"), ``train`` and ``test`` lists of entries with
``image_path``, ``mask_path`` and ``anomaly_class``, the paths relative to ``realiad_<res>/<category>/``.
The same jsons serve every resolution, so the image folder is chosen by what is present. Real-IAD is
downloaded one category archive at a time, so a category counts as present only with its image folder.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from calibration.datasets.base import GOOD, DatasetError, DatasetLoader, Sample
from calibration.datasets.files import absent, visible

# Preference when several are present: the sharpest resized set, the full-size originals last (slow to read).
RESOLUTIONS = ("realiad_1024", "realiad_512", "realiad_256", "realiad_raw")
JSON_DIRS = ("realiad_jsons/realiad_jsons", "realiad_jsons")
# The dataset's defect codes, as its paper names them.
DEFECT_NAMES = {
    "AK": "pit",
    "BX": "deformation",
    "CH": "abrasion",
    "HS": "scratch",
    "PS": "damage",
    "QS": "missing_parts",
    "YW": "foreign_objects",
    "ZW": "contamination",
}


def _jsons(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if visible(p))


class RealIADLoader(DatasetLoader):
    kind = "realiad"
    layout = (
        "<root>/realiad_jsons/<category>.json with images under <root>/realiad_<res>/<category>/ "
        f"(<res> one of {', '.join(r.removeprefix('realiad_') for r in RESOLUTIONS)})"
    )
    none_found = "found no category with both a json and an image folder"

    @cached_property
    def json_dir(self) -> Path:
        found = next((self.root / d for d in JSON_DIRS if _jsons(self.root / d)), None)
        if found is None:
            raise self.layout_error("found no realiad_jsons/*.json")
        return found

    @cached_property
    def image_dir(self) -> Path:
        found = next((self.root / r for r in RESOLUTIONS if (self.root / r).is_dir()), None)
        if found is None:
            raise self.layout_error(f"found none of the image folders {', '.join(RESOLUTIONS)}")
        return found

    def categories(self) -> list[str]:
        return [p.stem for p in _jsons(self.json_dir) if (self.image_dir / p.stem).is_dir()]

    def _load(self, category: str) -> list[Sample]:
        path = self.json_dir / f"{category}.json"
        try:
            split = json.loads(path.read_text(encoding="utf-8"))
            normal = split.get("meta", {}).get("normal_class", "OK")
            entries = sorted(split["test"], key=lambda entry: entry["image_path"])
            samples = [self._sample(category, normal, entry) for entry in entries]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DatasetError(f"realiad: {path} is not a Real-IAD split file: {error!r}") from error
        missing = absent(p for s in samples for p in (s.image, s.mask))
        if missing:
            raise self.layout_error(
                f"{len(missing)} file(s) listed in {path.name} are missing under {self.image_dir}, "
                f"e.g. {missing[0]}"
            )
        return samples

    def _sample(self, category: str, normal: str, entry: dict[str, Any]) -> Sample:
        folder = self.image_dir / category
        code = entry["anomaly_class"]
        label = int(code != normal)
        mask = entry.get("mask_path") if label else None
        return Sample(
            image=folder / entry["image_path"],
            category=category,
            label=label,
            defect=DEFECT_NAMES.get(code, code) if label else GOOD,
            mask=folder / mask if mask else None,
            dataset=self.kind,
        )
