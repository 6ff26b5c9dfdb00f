"""Unsupervised region proposal: where on this part would an inspector look first?

IndusAgent's training-free pipeline, from a single frame with no reference image: estimate what the
defect-free surface looks like (a median far wider than a defect but narrower than the part), take the
difference, split it with Otsu, clean it with morphology, and rank the connected components. The model
gets these boxes as starting points and the crop tool falls back to the best one, so the function must
never fail and must stay cheap next to a model call.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from tools.boxes import RegionProposal, box_iou, px_to_rel
from tools.image import as_uint8, to_gray

# Long side of the analysis copy (an integer factor down, so 160-320 px for any frame larger than that):
# enough for defects down to 1-2% of the frame's side, and it keeps the whole call at a few
# milliseconds whatever the camera resolution.
WORK_SIDE = 320
# Median window as a fraction of the long side: wide enough that a defect does not pull the median
# towards itself, narrow enough to follow the part's own shading and shape.
BACKGROUND_FRACTION = 1 / 8
# A deviation is measured in units of the frame's typical deviation, but never of less than this many
# grey levels, so the sensor noise of a flat frame is not blown up into "defects".
NOISE_FLOOR = 1.0
# Sobel magnitudes reach ~1440 on uint8 input; the median filter needs uint8, so they are scaled down.
GRADIENT_SCALE = 0.25
# Parts are fixtured near the middle of the field of view and defects lie on the part, so a region's
# score is weighted by a Gaussian of its distance from the centre (in half-diagonals). Broad on purpose:
# a clear defect near the border still outranks faint texture in the middle.
CENTRE_SIGMA = 0.5
# Context around a component, per side as a fraction of its size, and the smallest box side as a
# fraction of the frame's long side: a pin-point box is useless to a model that has to recognise it.
BOX_PADDING = 0.25
MIN_BOX_FRACTION = 1 / 16
NMS_IOU = 0.5
# The half-resolution background needs this many pixels on its short side; smaller analysis copies
# take the median at full resolution.
MIN_HALF_SIDE = 16
MAX_FALLBACK_TILES = 16

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Analysis:
    """The deviation map of the analysis copy and how it maps back to the frame."""

    deviation: np.ndarray  # float32, in units of typical deviation
    scale_x: float  # frame pixels per analysis pixel
    scale_y: float
    width: int  # frame size
    height: int


def propose_regions(image: np.ndarray, k: int = 3, max_area: float = 1 / 16) -> list[RegionProposal]:
    """The ``k`` most suspicious regions of a frame, best first, each covering at most ``max_area``.

    ``score`` is the region's mean deviation from the estimated background, in units of the frame's
    typical deviation, times the centre prior: it orders regions within a frame, it is no calibrated
    defect probability. Boxes overlapping a better one with IoU > 0.5 are dropped as duplicates.
    Boxes with no evidence behind them (a uniform frame, fewer components than ``k``) come from a
    fallback (the centre, then the tiles of the frame that deviate most) with score 0, so callers always
    get at least one box. A box is never smaller than one pixel, even on a frame so small that
    ``max_area`` of it is less than a pixel.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(max_area, bool) or not isinstance(max_area, numbers.Real) or not 0 < max_area <= 1:
        raise ValueError(f"max_area must be a fraction of the image area in (0, 1], got {max_area!r}")
    image = as_uint8(image)
    analysis = _analyse(image)
    chosen: list[tuple[float, Box]] = []
    for score, box in _ranked_components(analysis, max_area):
        _keep_distinct(chosen, score, box)
        if len(chosen) == k:
            break
    for box in _fallback_boxes(analysis, max_area):
        if len(chosen) == k:
            break
        _keep_distinct(chosen, 0.0, box)
    w, h = analysis.width, analysis.height
    return [RegionProposal(bbox_px=box, bbox=px_to_rel(box, w, h), score=score) for score, box in chosen]


def _keep_distinct(chosen: list[tuple[float, Box]], score: float, box: Box) -> None:
    """Append unless a better box already covers much the same region."""
    if all(box_iou(box, other) <= NMS_IOU for _, other in chosen):
        chosen.append((score, box))


def _analyse(image: np.ndarray) -> _Analysis:
    """Downscale by an integer factor and compute the deviation from the estimated background.

    An integer factor is several times faster with INTER_AREA than an arbitrary one; the few frame
    pixels it leaves out at the right and bottom edges are below one analysis pixel.
    """
    gray = to_gray(image)
    height, width = gray.shape
    factor = max(1, math.ceil(max(height, width) / WORK_SIDE))
    # A side shorter than the factor (a frame like 2000 x 3) still keeps one analysis pixel.
    sh, sw = max(1, height // factor), max(1, width // factor)
    small = gray
    if factor > 1:
        small = cv2.resize(gray[: sh * factor, : sw * factor], (sw, sh), interpolation=cv2.INTER_AREA)
    scale_x, scale_y = min(factor, width / sw), min(factor, height / sh)
    return _Analysis(_deviation_map(small), scale_x, scale_y, width, height)


def _deviation_map(gray: np.ndarray) -> np.ndarray:
    """How far each pixel is from the defect-free appearance, in units of the frame's typical deviation.

    Two cues, each measured against its own median background: brightness catches stains, holes and
    foreign bodies; local gradient energy catches scratches and texture breaks whose mean brightness
    barely changes. Both are scaled by their own typical deviation so that a cue with nothing to say
    contributes only noise, and added so that a region deviating in both ranks first.
    """
    window = _odd(max(gray.shape) * BACKGROUND_FRACTION)
    brightness = _cue_deviation(gray, window)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    energy = cv2.convertScaleAbs(cv2.blur(cv2.magnitude(gx, gy), (5, 5)), alpha=GRADIENT_SCALE)
    texture = _cue_deviation(energy, window)
    return cv2.GaussianBlur(brightness + texture, (3, 3), 0)


def _cue_deviation(cue: np.ndarray, window: int) -> np.ndarray:
    """|cue - median background| over a robust scale (MAD of a half-normal: 1.4826 x median)."""
    diff = cv2.absdiff(cue, _background(cue, window))
    counts = np.bincount(diff.ravel(), minlength=256).cumsum()
    median = int(np.searchsorted(counts, diff.size / 2))
    return diff.astype(np.float32) * (1 / max(1.4826 * median, NOISE_FLOOR))


def _background(cue: np.ndarray, window: int) -> np.ndarray:
    """Median-filtered cue; taken at half resolution, since the background is smooth by construction
    and a wide median is the most expensive step of the whole proposal."""
    height, width = cue.shape
    if min(height, width) < 2 * MIN_HALF_SIDE:
        return cv2.medianBlur(cue, window)
    half = cv2.resize(cue, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.medianBlur(half, _odd(window / 2)), (width, height), interpolation=cv2.INTER_LINEAR)


def _odd(size: float) -> int:
    """Odd window size of at least 3 (what medianBlur accepts)."""
    return max(3, int(size) // 2 * 2 + 1)


def _ranked_components(analysis: _Analysis, max_area: float) -> Iterator[tuple[float, Box]]:
    """Otsu + morphology + connected components of the deviation map, scored and boxed, best first.

    Score: mean deviation (how unusual the region is, not how large; a large normal area such as a
    glare band would otherwise win) x the centre prior.
    """
    dev = analysis.deviation
    peak = float(dev.max())
    if peak <= 0:
        return
    scaled = cv2.convertScaleAbs(dev, alpha=255.0 / peak)
    _, binary = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    sums = np.bincount(labels.ravel(), weights=dev.ravel(), minlength=count)[1:]
    sh, sw = dev.shape
    dx = (centroids[1:, 0] + 0.5) / sw * 2 - 1
    dy = (centroids[1:, 1] + 0.5) / sh * 2 - 1
    radius2 = (dx * dx + dy * dy) / 2  # squared distance from the centre in half-diagonals
    scores = sums / areas * np.exp(-radius2 / (2 * CENTRE_SIGMA**2))
    for i in np.argsort(-scores, kind="stable"):
        yield float(scores[i]), _component_box(analysis, labels, stats[i + 1], i + 1, max_area)


def _component_box(
    analysis: _Analysis, labels: np.ndarray, stat: np.ndarray, label: int, max_area: float
) -> Box:
    """The component's box in frame pixels with context; an oversized one shrinks around its peak."""
    x, y, w, h = (int(v) for v in stat[:4])
    fx, fy, width, height = analysis.scale_x, analysis.scale_y, analysis.width, analysis.height
    min_side = MIN_BOX_FRACTION * max(width, height)
    bw = max(w * fx * (1 + 2 * BOX_PADDING), min_side)
    bh = max(h * fy * (1 + 2 * BOX_PADDING), min_side)
    cx, cy = (x + w / 2) * fx, (y + h / 2) * fy
    if w * fx * h * fy > max_area * width * height:
        region = np.where(labels[y : y + h, x : x + w] == label, analysis.deviation[y : y + h, x : x + w], -1)
        py, px = np.unravel_index(int(np.argmax(region)), region.shape)
        cx, cy = (x + px + 0.5) * fx, (y + py + 0.5) * fy
    return _fit_box(cx, cy, bw, bh, width, height, max_area)


def _fit_box(cx: float, cy: float, bw: float, bh: float, width: int, height: int, max_area: float) -> Box:
    """Integer box of about ``bw`` x ``bh`` centred near (cx, cy), inside the frame, within max_area.

    Shrinks keeping the aspect ratio and shifts rather than clips at the frame edge, so the box keeps
    its size; at least one pixel.
    """
    limit = max_area * width * height
    if bw * bh > limit:
        shrink = math.sqrt(limit / (bw * bh))
        bw, bh = bw * shrink, bh * shrink
    w = max(1, min(width, int(bw)))
    h = max(1, min(height, int(bh)))
    while w * h > limit and (w > 1 or h > 1):  # a side rounded up to one pixel, or float error at the limit
        if w >= h:
            w = max(1, min(w - 1, int(limit // h)))
        else:
            h = max(1, min(h - 1, int(limit // w)))
    x1 = min(max(0, round(cx - w / 2)), width - w)
    y1 = min(max(0, round(cy - h / 2)), height - h)
    return x1, y1, x1 + w, y1 + h


def _fallback_boxes(analysis: _Analysis, max_area: float) -> Iterator[Box]:
    """The centre (where the part is), then a tiling of the frame, the most deviating tiles first.

    The tiling is at most 16 x 16: finer tiles would only matter for callers asking for hundreds of
    boxes, and tiles larger than ``max_area`` shrink around their centres, so they stay distinct.
    """
    width, height = analysis.width, analysis.height
    side = math.sqrt(max_area)
    yield _fit_box(width / 2, height / 2, width * side, height * side, width, height, max_area)
    n = min(math.ceil(1 / side), MAX_FALLBACK_TILES)
    means = cv2.resize(analysis.deviation, (n, n), interpolation=cv2.INTER_AREA)
    tiles = sorted(
        (-float(means[row, col]), (col + 0.5 - n / 2) ** 2 + (row + 0.5 - n / 2) ** 2, col, row)
        for row in range(n)
        for col in range(n)
    )
    for _, _, col, row in tiles:
        cx, cy = (col + 0.5) * width / n, (row + 0.5) * height / n
        yield _fit_box(cx, cy, width / n, height / n, width, height, max_area)
