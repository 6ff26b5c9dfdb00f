"""The `measure` tool: geometry between points and boxes the model names, in pixels and millimetres.

Missing, shifted or bent components and wrong spacing are judged by numbers, which a vision-language
model estimates poorly by eye. Items arrive on the 0-1000 grid and are converted per axis to pixels of
the original frame first, so distances are true even when the frame is not square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tools.boxes import GRID, box_iou

Operation = Literal["distance", "angle", "position", "spacing"]
OPERATIONS: tuple[Operation, ...] = ("distance", "angle", "position", "spacing")


class MeasureError(ValueError):
    """Items that do not fit the operation; the message tells the model what to send instead."""


class Item:
    """A point ``[x, y]`` or a box ``[x1, y1, x2, y2]`` given on the 0-1000 grid, held in pixels."""

    def __init__(self, values: Sequence[float], width: int, height: int, index: int):
        if len(values) not in (2, 4):
            raise MeasureError(f"item {index}: give a point [x, y] or a box [x1, y1, x2, y2]")
        if not all(math.isfinite(v) and 0 <= v <= GRID for v in values):
            raise MeasureError(f"item {index}: values must be finite and within 0..{GRID}")
        sx, sy = width / GRID, height / GRID
        if len(values) == 2:
            self.box = None
            self.center = (values[0] * sx, values[1] * sy)
        else:
            x1, y1, x2, y2 = values
            if x2 <= x1 or y2 <= y1:
                raise MeasureError(f"item {index}: box must have x2 > x1 and y2 > y1")
            self.box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
            self.center = ((x1 + x2) * sx / 2, (y1 + y2) * sy / 2)


def _r(value: float) -> float:
    return round(float(value), 2)


def _with_mm(out: dict, mm_per_px: float | None, *keys: str) -> dict:
    if mm_per_px:
        for key in keys:
            value = out[key]
            out[key.replace("_px", "_mm")] = (
                [_r(v * mm_per_px) for v in value] if isinstance(value, list) else _r(value * mm_per_px)
            )
    return out


def _box_gap(a: tuple, b: tuple) -> float:
    """Shortest distance between two boxes' edges; 0 when they touch or overlap."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


def distance(a: Item, b: Item, mm_per_px: float | None = None) -> dict:
    dx, dy = b.center[0] - a.center[0], b.center[1] - a.center[1]
    out = {"distance_px": _r(math.hypot(dx, dy)), "dx_px": _r(dx), "dy_px": _r(dy)}
    keys = ["distance_px", "dx_px", "dy_px"]
    if a.box and b.box:
        out["gap_px"] = _r(_box_gap(a.box, b.box))
        keys.append("gap_px")
    return _with_mm(out, mm_per_px, *keys)


def angle(items: Sequence[Item]) -> dict:
    """Two items: direction of the line from the first to the second, degrees from the image's x axis
    (positive turning towards +y, i.e. clockwise on screen). Three items: the angle at the middle one."""
    if len(items) == 2:
        (ax, ay), (bx, by) = items[0].center, items[1].center
        if (ax, ay) == (bx, by):
            raise MeasureError("the two items coincide; no direction is defined")
        deg = math.degrees(math.atan2(by - ay, bx - ax))
        return {"angle_deg": _r(deg), "deviation_from_horizontal_deg": _r(_axis_deviation(deg))}
    if len(items) == 3:
        (ax, ay), (bx, by), (cx, cy) = (it.center for it in items)
        v1, v2 = (ax - bx, ay - by), (cx - bx, cy - by)
        n1, n2 = math.hypot(*v1), math.hypot(*v2)
        if n1 == 0 or n2 == 0:
            raise MeasureError("the vertex coincides with an end point; no angle is defined")
        cos = max(-1.0, min(1.0, (v1[0] * v2[0] + v1[1] * v2[1]) / (n1 * n2)))
        return {"angle_deg": _r(math.degrees(math.acos(cos)))}
    raise MeasureError("angle takes 2 items (a direction) or 3 items (the angle at the middle one)")


def _axis_deviation(deg: float) -> float:
    """How far a direction is from horizontal, ignoring which way the line runs (0..90)."""
    d = abs(deg) % 180
    return min(d, 180 - d)


def position(a: Item, b: Item, mm_per_px: float | None = None) -> dict:
    """Where the first item lies relative to the second: offset, direction words, overlap."""
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    words = []
    if abs(dy) > 0.5:
        words.append("below" if dy > 0 else "above")
    if abs(dx) > 0.5:
        words.append("right" if dx > 0 else "left")
    out = {"dx_px": _r(dx), "dy_px": _r(dy), "direction": "-".join(words) or "same centre"}
    if a.box and b.box:
        out["iou"] = round(box_iou(a.box, b.box), 4)
        out["inside"] = bool(
            a.box[0] >= b.box[0] and a.box[1] >= b.box[1] and a.box[2] <= b.box[2] and a.box[3] <= b.box[3]
        )
    return _with_mm(out, mm_per_px, "dx_px", "dy_px")


def spacing(items: Sequence[Item], mm_per_px: float | None = None, tolerance: float = 0.15) -> dict:
    """Centre-to-centre gaps of a row of items, in order along the row's main axis.

    Also reports the largest deviation from the fitted row line (a shifted or bent component) and which
    gaps differ from the median gap by more than ``tolerance`` (a missing or misplaced one).
    """
    if len(items) < 2:
        raise MeasureError("spacing needs at least 2 items")
    centers = np.array([it.center for it in items], dtype=np.float64)
    mean = centers.mean(axis=0)
    # Main axis of the row: first principal direction of the centres.
    _, _, vt = np.linalg.svd(centers - mean, full_matrices=False)
    axis = vt[0]
    if axis[0] < 0 or (axis[0] == 0 and axis[1] < 0):
        axis = -axis
    along = (centers - mean) @ axis
    across = (centers - mean) @ np.array([-axis[1], axis[0]])
    order = np.argsort(along, kind="stable")
    gaps = np.linalg.norm(np.diff(centers[order], axis=0), axis=1)
    median = float(np.median(gaps))
    irregular = [int(i) for i in np.flatnonzero(np.abs(gaps - median) > tolerance * median)]
    out = {
        "order": [int(i) for i in order],
        "gaps_px": [_r(g) for g in gaps],
        "mean_gap_px": _r(gaps.mean()),
        "median_gap_px": _r(median),
        "min_gap_px": _r(gaps.min()),
        "max_gap_px": _r(gaps.max()),
        "gap_cv": round(float(gaps.std() / gaps.mean()), 4) if gaps.mean() > 0 else 0.0,
        "irregular_gaps": irregular,
        "max_offset_from_row_px": _r(np.abs(across).max()) if len(items) > 2 else 0.0,
        "row_angle_deg": _r(math.degrees(math.atan2(axis[1], axis[0]))),
    }
    return _with_mm(out, mm_per_px, "gaps_px", "mean_gap_px", "median_gap_px", "min_gap_px", "max_gap_px")


def measure(
    operation: str,
    items: Sequence[Sequence[float]],
    width: int,
    height: int,
    mm_per_px: float | None = None,
) -> dict:
    """Run one measurement; raises MeasureError with a model-readable message on bad items."""
    if operation not in OPERATIONS:
        raise MeasureError(f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
    parsed = [Item(values, width, height, i) for i, values in enumerate(items)]
    if operation in ("distance", "position") and len(parsed) != 2:
        raise MeasureError(f"{operation} takes exactly 2 items")
    if operation == "distance":
        out = distance(parsed[0], parsed[1], mm_per_px)
    elif operation == "position":
        out = position(parsed[0], parsed[1], mm_per_px)
    elif operation == "angle":
        out = angle(parsed)
    else:
        out = spacing(parsed, mm_per_px)
    out["units"] = "px and mm" if mm_per_px else "px (no pixel scale configured)"
    return out
