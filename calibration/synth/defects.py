"""Surface defects: marks painted onto any rendered part, confined to the part's surface.

Each exercises a different tool: scratches and cracks are thin lines a crop-and-zoom resolves, a stain is a
blotch a few grey levels off that only contrast enhancement brings out, a hole is a dark opening in a
textile. They paint the clean float picture in place, before sensor noise, and return the mask as the
pixels their coverage touched, so the mask is exact by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from calibration.synth.raster import ellipses, over, polygons, polylines, r2, rgb, smooth

SurfaceDefect = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, dict[str, Any]]]


def _endpoints(region: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Two points on the surface between ``lo`` and ``hi`` apart, so a line between them stays mostly on it.

    Candidates sit on every other pixel (jittered back to sub-pixel positions): a quarter of the work.
    """
    ys, xs = np.nonzero(region[::2, ::2] >= 0.999)
    first = int(rng.integers(xs.size))
    dx, dy = (xs - xs[first]).astype(np.float32), (ys - ys[first]).astype(np.float32)
    dist = np.sqrt(dx * dx + dy * dy) * 2
    reach = np.flatnonzero((dist >= lo) & (dist <= hi))
    second = int(reach[rng.integers(reach.size)]) if reach.size else int(np.argmax(dist))
    jitter = rng.uniform(0, 2, (2, 2))
    return np.array([[xs[first], ys[first]], [xs[second], ys[second]]], dtype=np.float64) * 2 + jitter


def _centre(region: np.ndarray, rng: np.random.Generator, clearance: float) -> np.ndarray:
    """A point on the surface at least ``clearance`` from its edge (or the most interior one there is)."""
    inside = (region >= 0.999).astype(np.uint8)
    inside[[0, -1], :] = 0  # the frame edge bounds the surface too
    inside[:, [0, -1]] = 0
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    room = np.flatnonzero(dist.ravel() >= clearance)
    pick = int(room[rng.integers(room.size)]) if room.size else int(np.argmax(dist))
    y, x = divmod(pick, region.shape[0])
    return np.array([x, y], dtype=np.float64) + rng.uniform(0, 1, 2)


def _normal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    return np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)


def scratch(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A thin, slightly bowed bright line: metal exposed where something dragged across the surface."""
    size = region.shape[0]
    ends = _endpoints(region, rng, 0.2 * size, 0.42 * size)
    bow = rng.uniform(-0.08, 0.08) * float(np.hypot(*(ends[1] - ends[0])))
    mid = ends.mean(axis=0) + _normal(ends[0], ends[1]) * bow
    t = np.linspace(0, 1, 16)[:, None]
    path = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * mid + t**2 * ends[1]
    width = max(1, round(rng.uniform(1, 2.2) * size / 256))
    alpha = polylines(size, [path], width) * region * np.float32(rng.uniform(0.65, 0.9))
    over(image, alpha, rgb(238, 238, 234))
    return alpha > 0, {"endpoints": r2(ends), "width_px": width}


def _walk(
    start: np.ndarray, end: np.ndarray, step: float, wander: float, rng: np.random.Generator
) -> np.ndarray:
    """A jagged path from start to end: a random walk across the line, pinned at both ends."""
    count = max(6, int(np.hypot(*(end - start)) / step))
    drift = np.cumsum(rng.normal(0, wander, count))
    drift -= np.linspace(drift[0], drift[-1], count)
    t = np.linspace(0, 1, count)[:, None]
    return start + t * (end - start) + drift[:, None] * _normal(start, end)


def crack(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A dark jagged fracture with one side branch."""
    size = region.shape[0]
    k = size / 256
    ends = _endpoints(region, rng, 0.18 * size, 0.35 * size)
    main = _walk(ends[0], ends[1], 5 * k, 1.3 * k, rng)
    fork = main[int(rng.integers(len(main) // 4, 3 * len(main) // 4))]
    turn = np.radians(rng.choice([-1, 1]) * rng.uniform(25, 50))
    direction = ends[1] - ends[0]
    c, s = np.cos(turn), np.sin(turn)
    branch_end = fork + rng.uniform(0.3, 0.5) * np.array(
        [c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]]
    )
    branch = _walk(fork, branch_end, 5 * k, 1.0 * k, rng)
    width = max(1, round(rng.uniform(1, 1.8) * k))
    alpha = polylines(size, [main, branch], width) * region * np.float32(rng.uniform(0.75, 0.9))
    over(image, alpha, rgb(26, 23, 21))
    return alpha > 0, {"endpoints": r2(ends), "width_px": width}


def stain(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A faint irregular blotch, a few grey levels off: invisible at a glance, plain after CLAHE."""
    size = region.shape[0]
    radius = rng.uniform(12, 22) * size / 256
    centre = _centre(region, rng, 0.6 * radius)
    count = int(rng.integers(3, 6))
    offsets = rng.normal(0, 0.35 * radius, (count, 2))
    axes = radius * rng.uniform(0.4, 0.75, (count, 2))
    angles = rng.uniform(0, 180, count)
    blobs = [(*(centre + o), a, b, angle) for o, (a, b), angle in zip(offsets, axes, angles, strict=True)]
    mottle = 0.85 + 0.15 * np.clip(smooth(rng.standard_normal((8, 8), dtype=np.float32), size), -1, 1)
    alpha = ellipses(size, blobs) * region * mottle
    level = float(rng.uniform(4.5, 8.0))
    tint = rgb(0.9, 1.0, 1.1) if rng.random() < 0.5 else rgb(1.1, 1.0, 0.9)
    sign = -1 if rng.random() < 0.7 else 1
    image += alpha * (sign * level * tint)[:, None, None]
    return alpha > 0, {
        "centre": r2(centre),
        "radius_px": round(float(radius), 2),
        "delta_grey": round(sign * level, 2),
    }


def hole(image: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A small torn opening showing the dark backing, with loose fibre ends at its rim."""
    size = region.shape[0]
    k = size / 256
    radius = rng.uniform(6, 11) * k
    centre = _centre(region, rng, radius + 4 * k)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = radius * rng.uniform(0.7, 1.2, 14)
    rim = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
    opening = polygons(size, [rim]) * region
    ends = rim[rng.choice(len(rim), int(rng.integers(4, 8)), replace=False)]
    inward = (centre - ends) / np.hypot(*(centre - ends).T)[:, None]
    fibres = [np.stack([e, e + d * rng.uniform(3, 6) * k]) for e, d in zip(ends, inward, strict=True)]
    x, y = np.clip(np.round(ends.mean(axis=0)).astype(int), 0, size - 1)
    thread = np.minimum(image[:, y, x] * 1.1, 255)
    loose = polylines(size, fibres, 1) * region
    over(image, opening, rgb(16, 14, 14))
    over(image, loose, thread)
    return (opening + loose) > 0, {"centre": r2(centre), "radius_px": round(float(radius), 2)}


SURFACE_DEFECTS: dict[str, SurfaceDefect] = {"scratch": scratch, "crack": crack, "stain": stain, "hole": hole}
