"""How well the answered box finds the defect, against the ground-truth mask.

Ground truth is the mask's 8-connected components, each as its bounding box; one image may hold several
defects and the model answers one box, so an image scores its best match:

* IoU: the largest intersection-over-union between the answered box (0-1000 grid, converted to pixels of
  the inspected image by the protocol's own outward rounding) and any component box.
* hit: the answered pixel box contains at least one defect pixel of the mask. A box around the whole part
  always hits, which is why IoU is reported beside it.

Both are scored when the result is made, while the mask is at hand, and stored in the result, so metrics,
reports and comparisons never need the dataset again. They are averaged over the defective images whose mask
has defect pixels and whose verdict carries a box, whatever the decision (a fail-safe carries none);
``boxed / masked`` says how often the model localised at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pydantic import BaseModel

from tools.boxes import box_iou, rel_to_px

if TYPE_CHECKING:
    from calibration.validate.results import Result

PixelBox = tuple[int, int, int, int]


class BoxScore(BaseModel):
    iou: float
    hit: bool


def component_boxes(mask: np.ndarray) -> list[PixelBox]:
    """Half-open pixel boxes ``[x1, y1, x2, y2)`` of the mask's 8-connected components, in label order."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [
        (int(x), int(y), int(x + w), int(y + h))
        for x, y, w, h in stats[1:count, :4]  # component 0 is the background
    ]


def score_box(bbox: Sequence[float], mask: np.ndarray, gt_boxes: Sequence[PixelBox]) -> BoxScore:
    """Score an answered 0-1000 box against a mask with defect pixels and its component boxes."""
    height, width = mask.shape[:2]
    x1, y1, x2, y2 = rel_to_px(bbox, width, height)
    return BoxScore(
        iou=max(box_iou((x1, y1, x2, y2), gt) for gt in gt_boxes),
        hit=bool(mask[y1:y2, x1:x2].any()),
    )


class Localization:
    """Mean best IoU and hit rate over localised defective images."""

    def __init__(self) -> None:
        self.masked = 0
        self.scores: list[BoxScore] = []

    def update(self, result: Result) -> None:
        if result.label != 1 or not result.gt_boxes:
            return
        self.masked += 1
        if result.localization is not None:
            self.scores.append(result.localization)

    def compute(self) -> dict[str, int | float | None]:
        boxed = len(self.scores)
        return {
            "masked": self.masked,
            "boxed": boxed,
            "iou": sum(s.iou for s in self.scores) / boxed if boxed else None,
            "hit_rate": sum(s.hit for s in self.scores) / boxed if boxed else None,
        }
