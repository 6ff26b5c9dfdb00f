"""Boxes on Qwen3-VL's relative 0-1000 grid and their pixel counterparts.

The model grounds boxes on a 0-1000 grid of the image it was shown; tools convert at their boundary so
that every crop and measurement is taken from the full-resolution frame, never from the resized input.
Pixel boxes are half-open ``[x1, y1, x2, y2)``, integer, clipped to the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

GRID = 1000


def check_rel_box(bbox: object) -> str | None:
    """Why ``bbox`` is not a usable 0-1000 box, or None when it is."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "bbox must be a list of 4 numbers [x1, y1, x2, y2]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return "bbox values must be numbers"
    if not all(math.isfinite(v) for v in bbox):
        return "bbox values must be finite"
    x1, y1, x2, y2 = bbox
    if min(bbox) < 0 or max(bbox) > GRID:
        return f"bbox values must lie in 0..{GRID}"
    if x2 <= x1 or y2 <= y1:
        return "bbox must have x2 > x1 and y2 > y1"
    return None


def rel_to_px(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """0-1000 box -> pixel box covering it (outward rounding, at least one pixel)."""
    x1, y1, x2, y2 = bbox
    px1 = min(width - 1, max(0, math.floor(x1 * width / GRID)))
    py1 = min(height - 1, max(0, math.floor(y1 * height / GRID)))
    px2 = max(px1 + 1, min(width, math.ceil(x2 * width / GRID)))
    py2 = max(py1 + 1, min(height, math.ceil(y2 * height / GRID)))
    return px1, py1, px2, py2


def px_to_rel(bbox_px: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box -> 0-1000 box (nearest grid value)."""
    x1, y1, x2, y2 = bbox_px
    return (
        round(x1 * GRID / width),
        round(y1 * GRID / height),
        round(x2 * GRID / width),
        round(y2 * GRID / height),
    )


def rel_point_to_px(point: Sequence[float], width: int, height: int) -> tuple[float, float]:
    """0-1000 point -> sub-pixel position in the frame (pixel centres sit at integer + 0.5)."""
    return point[0] * width / GRID, point[1] * height / GRID


def expand_px(
    bbox_px: Sequence[int], width: int, height: int, padding: float = 0.0, min_side: int = 0
) -> tuple[int, int, int, int]:
    """Grow a pixel box by ``padding`` x its size on each side and to at least ``min_side``,
    shifting it back inside the frame rather than cutting it where possible."""
    x1, y1, x2, y2 = bbox_px
    bw, bh = x2 - x1, y2 - y1
    nw = min(width, max(round(bw * (1 + 2 * padding)), min_side, 1))
    nh = min(height, max(round(bh * (1 + 2 * padding)), min_side, 1))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    nx1 = min(max(0, round(cx - nw / 2)), width - nw)
    ny1 = min(max(0, round(cy - nh / 2)), height - nh)
    return nx1, ny1, nx1 + nw, ny1 + nh


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class RegionProposal:
    """A suspicious region found without supervision, best-first in proposal lists."""

    bbox_px: tuple[int, int, int, int]
    bbox: tuple[int, int, int, int]
    score: float

    def to_dict(self) -> dict:
        return {"bbox_px": list(self.bbox_px), "bbox": list(self.bbox), "score": round(self.score, 4)}
