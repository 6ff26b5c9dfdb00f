"""A plain folder of sorted images: recorded production frames, or a benchmark without a loader of its own.

One category:

    <root>/good/**/*.png                    defect-free, at any depth
    <root>/<defect>/**/*.png                any other folder is a defect type, named by the folder
    <root>/masks/<defect>/<path>.png        optional masks, mirroring the image's path under <defect>/
    <root>/<defect>/**/<stem>_mask.png      or beside the image (also accepted in masks/)

Several categories: ``<root>/<category>/`` each laid out as above. A root holding ``good/`` is one
category, named by the single category given to the loader or else by the root folder; otherwise every
subfolder holding ``good/`` is a category. Masks are optional, so a defective image without one simply
has none; a good image never has one.
"""

from __future__ import annotations

from pathlib import Path

from calibration.datasets.base import GOOD, DatasetLoader, Sample
from calibration.datasets.files import find_mask, images, pair_masks, subdirs

MASKS = "masks"
MASK_NAMES = ("{stem}", "{stem}_mask")


def _key(path: Path, folder: Path) -> str:
    """A file's path under ``folder`` without its extension: how an image finds its mask in masks/."""
    return path.relative_to(folder).with_suffix("").as_posix()


class FolderLoader(DatasetLoader):
    kind = "folder"
    layout = "<root>/good/ and <root>/<defect>/ image folders, or <root>/<category>/good/ and so on"
    none_found = "found no good/ folder, neither in the root nor in any subfolder"

    def _single(self) -> bool:
        return (self.root / GOOD).is_dir()

    def categories(self) -> list[str]:
        if self._single():
            named = self.selected is not None and len(self.selected) == 1
            return [self.selected[0] if named else self.root.name]
        return [d.name for d in subdirs(self.root) if (d / GOOD).is_dir()]

    def _load(self, category: str) -> list[Sample]:
        folder = self.root if self._single() else self.root / category
        samples = []
        for defect_dir in subdirs(folder):
            if defect_dir.name == MASKS:
                continue
            defect = defect_dir.name
            masks_dir = folder / MASKS / defect
            masks = {_key(p, masks_dir): p for p in images(masks_dir, recursive=True)}
            for image, beside in pair_masks(images(defect_dir, recursive=True), "_mask"):
                label = int(defect != GOOD)
                mask = beside or find_mask(masks, _key(image, defect_dir), MASK_NAMES)
                samples.append(
                    Sample(
                        image=image,
                        category=category,
                        label=label,
                        defect=defect,
                        mask=mask if label else None,
                        dataset=self.kind,
                    )
                )
        if not samples:
            raise self.layout_error(f"{folder} holds no image in good/ or a <defect>/ folder")
        return samples
