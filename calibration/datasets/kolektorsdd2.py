"""KolektorSDD2 (Bozic et al. 2021), test split as distributed.

    <root>/test/<id>.png with <root>/test/<id>_GT.png     (a root without test/ is read as the split itself)

Like KolektorSDD there are no defect folders: an image is defective when its GT mask has a defect pixel.
"""

from __future__ import annotations

from pathlib import Path

from calibration.datasets.files import images
from calibration.datasets.kolektor import KolektorSDDLoader


class KolektorSDD2Loader(KolektorSDDLoader):
    kind = "ksdd2"
    category = "kolektorsdd2"
    layout = "<root>/test/<id>.png with <root>/test/<id>_GT.png"
    none_found = "found no <id>.png image with its <id>_GT.png"
    mask_suffix = "_GT"

    def _files(self) -> list[Path]:
        split = self.root / "test"
        return images(split if split.is_dir() else self.root)
