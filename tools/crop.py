"""The `crop` tool: a high-resolution patch of the original frame around a region the model names.

The model sees a downscaled frame, so fine defects are diluted; cropping from full resolution recovers
them. When the model gives no usable box the tool still answers with the most suspicious region found
by the unsupervised proposal (or the centre), as the IndusAgent pipeline does: a zoom request never fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tools.boxes import check_rel_box, expand_px, px_to_rel, rel_to_px
from tools.image import as_uint8, fit_pixels
from tools.proposal import propose_regions

CropSource = Literal["model", "proposal"]


@dataclass
class CropResult:
    patch: np.ndarray
    bbox_px: tuple[int, int, int, int]
    bbox: tuple[int, int, int, int]
    source: CropSource
    note: str | None = None

    def describe(self) -> dict:
        h, w = self.patch.shape[:2]
        out = {"bbox": list(self.bbox), "bbox_px": list(self.bbox_px), "source": self.source, "size": [w, h]}
        if self.note:
            out["note"] = self.note
        return out


def crop(
    image: np.ndarray,
    bbox: object = None,
    *,
    padding: float = 0.1,
    min_side: int = 32,
    max_pixels: int = 512 * 512,
    min_output_side: int = 224,
) -> CropResult:
    """Crop ``bbox`` (0-1000 grid) from ``image`` with context padding.

    The region grows by ``padding`` x its size on each side and to at least ``min_side`` pixels, so a
    pin-point box still shows its surroundings; the patch is then resized so its short side reaches
    ``min_output_side`` without exceeding ``max_pixels``. A missing or invalid box falls back to the best
    region proposal; ``source`` and ``note`` say so.
    """
    image = as_uint8(image)
    h, w = image.shape[:2]
    problem = "no bbox given" if bbox is None else check_rel_box(bbox)
    if problem is None:
        region = rel_to_px(bbox, w, h)  # type: ignore[arg-type]
        source: CropSource = "model"
    else:
        region = propose_regions(image, k=1)[0].bbox_px
        source = "proposal"
    x1, y1, x2, y2 = expand_px(region, w, h, padding=padding, min_side=min_side)
    patch = fit_pixels(image[y1:y2, x1:x2], max_pixels, min_output_side)
    return CropResult(
        patch=np.ascontiguousarray(patch),
        bbox_px=(x1, y1, x2, y2),
        bbox=px_to_rel((x1, y1, x2, y2), w, h),
        source=source,
        note=None if problem is None else f"{problem}; cropped the most suspicious region instead",
    )
