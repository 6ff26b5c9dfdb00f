"""KolektorSDD (Tabernik et al. 2019) as distributed, and the "SDD" cut of it that zero-shot papers report.

    <root>/kosNN/PartK.jpg
    <root>/kosNN/PartK_label.bmp        every part has one; all zero on defect-free parts

The dataset has no defect-type or good/bad folders: the label is whether the mask has a defect pixel.

SDD (AnomalyCLIP, InCTRL, IAD-R1 and others) cuts every image into three pieces along its rows, at
``h // 3`` and ``2 * h // 3`` as their preprocessing script does, each piece labelled by its part of the
mask. That script then keeps all defective pieces and a random quarter of the good ones as its test set
(sklearn ``train_test_split(test_size=0.25, random_state=42)`` over ``os.listdir`` order, which is not
reproducible across file systems): 54 defective and 286 of the 1,143 good pieces that the 399 images give.
Here every piece is a test sample; balanced accuracy, the metric those papers report, does not depend on how
many good pieces there are, only on the rate at which they are accepted.
"""

from __future__ import annotations

from functools import cached_property
from itertools import pairwise
from pathlib import Path

import numpy as np

from calibration.datasets.base import GOOD, DatasetLoader, Sample, read_mask
from calibration.datasets.files import images, pair_masks, subdirs

DEFECT = "defect"  # the dataset names no defect types

Region = tuple[int, int, int, int]


class KolektorSDDLoader(DatasetLoader):
    """Images each with a mask beside it, labelled by the mask; KolektorSDD2 differs only in file names."""

    kind = "ksdd"
    category = "kolektorsdd"
    layout = "<root>/kosNN/PartK.jpg with <root>/kosNN/PartK_label.bmp"
    none_found = "found no kosNN/ folder with Part images"
    mask_suffix = "_label"

    def _files(self) -> list[Path]:
        return [image for folder in subdirs(self.root) for image in images(folder)]

    @cached_property
    def _pairs(self) -> list[tuple[Path, Path]]:
        pairs = pair_masks(self._files(), self.mask_suffix)
        for image, mask in pairs:
            # The label comes from the mask, so an image without one cannot be labelled at all.
            if mask is None:
                raise self.layout_error(
                    f"no mask for {image}: expected {image.stem}{self.mask_suffix}.* beside it"
                )
        return [(image, mask) for image, mask in pairs if mask is not None]

    def categories(self) -> list[str]:
        return [self.category] if self._pairs else []

    def _regions(self, height: int, width: int) -> list[Region | None]:
        """The pieces one image is evaluated as (None: the whole image)."""
        return [None]

    def _load(self, category: str) -> list[Sample]:
        samples = []
        for image, mask_file in self._pairs:
            mask = read_mask(mask_file)
            height, width = mask.shape
            for region in self._regions(height, width):
                x1, y1, x2, y2 = region or (0, 0, width, height)
                defective = bool(np.any(mask[y1:y2, x1:x2]))
                samples.append(
                    Sample(
                        image=image,
                        category=category,
                        label=int(defective),
                        defect=DEFECT if defective else GOOD,
                        mask=mask_file if defective else None,
                        dataset=self.kind,
                        region=region,
                    )
                )
        return samples


class SDDLoader(KolektorSDDLoader):
    """The SDD pieces, cut from the raw KolektorSDD files at read time rather than from a converted copy."""

    kind = "sdd"

    def _regions(self, height: int, width: int) -> list[Region | None]:
        cuts = [0, height // 3, height * 2 // 3, height]
        return [(0, top, width, bottom) for top, bottom in pairwise(cuts)]
