"""Texture categories: surfaces with no countable structure, where a defect breaks a statistical pattern.

Brushed metal (anisotropic streaks), woven fabric (periodic weave) and wood (ring-like grain) cover the three
kinds of texture an inspector meets: directional, periodic and quasi-regular. Good parts differ in phase,
angle, lighting and noise so that a detector cannot memorise one picture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from calibration.synth.blueprint import Blueprint, Rendered, Reshaped
from calibration.synth.raster import (
    Lighting,
    bands,
    grid,
    pick,
    rgb,
    rotate,
    smooth,
    streaks,
    tinted,
    unit_noise,
)


def _whole(size: int) -> np.ndarray:
    return np.ones((size, size), np.float32)


@dataclass(frozen=True)
class BrushedMetal:
    size: int
    level: float
    tint: np.ndarray
    angle: float
    grain: np.ndarray
    passes: np.ndarray
    light: Lighting


def sample_brushed_metal(size: int, rng: np.random.Generator) -> BrushedMetal:
    return BrushedMetal(
        size=size,
        level=float(rng.uniform(140, 172)),
        tint=rgb(0.97, 1.0, 1.04) * rng.uniform(0.98, 1.02, 3).astype(np.float32),
        angle=float(rng.uniform(-4, 4)),
        grain=unit_noise(rng, size),
        passes=rng.standard_normal(max(8, size // 5)).astype(np.float32),
        light=Lighting.sample(rng, vignette=(0.15, 0.3)),
    )


def render_brushed_metal(p: BrushedMetal) -> Rendered:
    relief = streaks(p.grain, round(64 * p.size / 256)) * 4.5 + bands(p.passes, p.size) * 2.5
    level = (p.level + rotate(relief, p.angle)) * p.light.field(p.size)
    return Rendered(tinted(level, p.tint), _whole(p.size), {"streak_angle_deg": round(p.angle, 2)})


@dataclass(frozen=True)
class WovenFabric:
    """A plain weave: warp threads run along v, weft along u, crossing over and under in a checkerboard.

    ``broken`` is a thread segment that is missing, as (axis 0 = warp / 1 = weft, thread index, start, end)
    with start and end in thread spacings along the thread.
    """

    size: int
    spacing: float
    angle: float
    phase: tuple[float, float]
    warp: np.ndarray
    weft: np.ndarray
    fibres: np.ndarray
    dye: np.ndarray
    light: Lighting
    broken: tuple[int, int, float, float] | None = None


def sample_woven_fabric(size: int, rng: np.random.Generator) -> WovenFabric:
    # One product, one cloth: the dye varies a little between bolts, not from blue to red.
    base = rgb(92, 118, 150) * rgb(*rng.uniform(0.95, 1.05, 3)) * np.float32(rng.uniform(0.9, 1.08))
    return WovenFabric(
        size=size,
        spacing=max(3.0, float(rng.uniform(7.0, 9.0) * size / 256)),  # finer aliases into moire
        angle=float(rng.uniform(-3, 3)),
        phase=(float(rng.uniform(0, 2)), float(rng.uniform(0, 2))),
        warp=base,
        weft=base * rgb(0.9, 0.94, 1.0) * rgb(*rng.uniform(0.97, 1.03, 3)),
        fibres=unit_noise(rng, size),
        dye=rng.standard_normal((6, 6), dtype=np.float32),
        light=Lighting.sample(rng),
    )


def _weave_coords(p: WovenFabric) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions in thread spacings: u across the warp threads, v across the weft threads."""
    x, y = grid(p.size)
    c, s = np.float32(np.cos(np.radians(p.angle))), np.float32(np.sin(np.radians(p.angle)))
    inv = np.float32(1 / p.spacing)
    return (c * x + s * y) * inv + p.phase[0], (c * y - s * x) * inv + p.phase[1]


def _broken_pixels(p: WovenFabric, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    assert p.broken is not None
    axis, index, start, end = p.broken
    across, along = (u, v) if axis == 0 else (v, u)
    return (np.floor(across) == index) & (along >= start) & (along <= end)


def render_woven_fabric(p: WovenFabric) -> Rendered:
    u, v = _weave_coords(p)
    iu, iv = np.floor(u), np.floor(v)
    su, sv = np.sin(np.pi * (u - iu)), np.sin(np.pi * (v - iv))
    crossing = iu + iv
    warp_top = (crossing - 2 * np.floor(crossing * 0.5) < 0.5).astype(np.float32)
    # A yarn is brightest along its middle and darkens where it dives under the crossing thread.
    warp_lit = np.sqrt(su) * (0.45 + 0.55 * np.sqrt(sv))
    weft_lit = np.sqrt(sv) * (0.45 + 0.55 * np.sqrt(su))
    fibre_len = round(9 * p.size / 256)
    fuzz = pick(warp_top, streaks(p.fibres, fibre_len, vertical=True), streaks(p.fibres, fibre_len))
    lit = pick(warp_top, warp_lit, weft_lit)
    warp, weft = p.warp[:, None, None], p.weft[:, None, None]
    colour = pick(warp_top, warp, weft)
    if p.broken is not None:
        # Where a thread is gone the crossing threads show through, recessed and in its shadow.
        gap = _broken_pixels(p, u, v).astype(np.float32)
        shows_warp = p.broken[0] == 1
        lit = pick(gap, (warp_lit if shows_warp else weft_lit) * 0.45, lit)
        colour = pick(gap, warp if shows_warp else weft, colour)
    level = (0.22 + 0.78 * lit + 0.05 * fuzz) * (1 + 0.06 * smooth(p.dye, p.size)) * p.light.field(p.size)
    geometry = {
        "thread_spacing_px": round(p.spacing, 3),
        "period_px": round(2 * p.spacing, 3),
        "angle_deg": round(p.angle, 2),
    }
    return Rendered(colour * level, _whole(p.size), geometry)


def broken_thread(p: WovenFabric, rng: np.random.Generator) -> Reshaped:
    """One warp or weft thread missing over a few crossings, near the middle of the frame."""
    axis = int(rng.integers(2))
    threads = p.size / p.spacing
    centre = (p.size - 1) / 2 / p.spacing
    index = int(np.floor(centre + p.phase[axis] + rng.uniform(-0.3, 0.3) * threads))
    middle = centre + p.phase[1 - axis] + rng.uniform(-0.25, 0.25) * threads
    length = float(rng.uniform(5, 9))
    broken = replace(p, broken=(axis, index, middle - length / 2, middle + length / 2))
    mask = _broken_pixels(broken, *_weave_coords(broken))
    change = {"thread": ("warp", "weft")[axis], "length_px": round(length * p.spacing, 2)}
    return Reshaped(broken, mask, change)


@dataclass(frozen=True)
class WoodGrain:
    """Growth rings around a pith far outside the frame, so they cross it as gently curved bands."""

    size: int
    period: float
    pith: tuple[float, float]
    squash: float
    warp: np.ndarray
    warp_amp: float
    years: float
    fibres: np.ndarray
    tone: np.ndarray
    blush: np.ndarray
    light: Lighting


def sample_wood_grain(size: int, rng: np.random.Generator) -> WoodGrain:
    period = float(rng.uniform(14, 22) * size / 256)
    return WoodGrain(
        size=size,
        period=period,
        pith=(float(size * rng.uniform(-0.5, 1.5)), float(-size * rng.uniform(1.0, 2.5))),
        squash=float(rng.uniform(1.0, 1.6)),
        warp=rng.standard_normal((5, 5), dtype=np.float32),
        warp_amp=float(period * rng.uniform(0.3, 0.6)),
        years=float(rng.uniform(0, 100)),
        fibres=unit_noise(rng, size),
        tone=rgb(200, 145, 92) * rgb(*rng.uniform(0.94, 1.04, 3)),
        blush=rng.standard_normal((4, 4), dtype=np.float32),
        light=Lighting.sample(rng),
    )


def _unit(hashed: np.ndarray) -> np.ndarray:
    return hashed.astype(np.float32) * np.float32(2.0**-32)


def render_wood_grain(p: WoodGrain) -> Rendered:
    x, y = grid(p.size)
    dx, dy = x - np.float32(p.pith[0]), (y - np.float32(p.pith[1])) * np.float32(p.squash)
    radius = np.sqrt(dx * dx + dy * dy) + smooth(p.warp, p.size) * np.float32(p.warp_amp)
    years = radius * np.float32(1 / p.period) + np.float32(p.years)
    ring = np.floor(years)
    # Earlywood is pale; latewood darkens towards the end of each year and stops abruptly. Every year
    # grew differently: an integer hash of the ring number (exact on any CPU, unlike a sine hash) sets
    # where its latewood starts and how dark it gets.
    hashed = ring.astype(np.uint32) * np.uint32(2654435761)
    start = 0.4 + 0.3 * _unit(hashed)
    late = np.clip((years - ring - start) / (1 - start), 0, 1)
    late *= np.sqrt(late)
    depth = 0.16 + 0.18 * _unit((hashed ^ (hashed >> np.uint32(15))) * np.uint32(2246822519))
    grain = streaks(p.fibres, round(40 * p.size / 256))
    level = (1 - depth * late) * (1 + 0.045 * grain + 0.04 * smooth(p.blush, p.size)) * p.light.field(p.size)
    return Rendered(tinted(level, p.tone), _whole(p.size), {"period_px": round(p.period, 3)})


BRUSHED_METAL = Blueprint(sample_brushed_metal, render_brushed_metal, surface=("scratch", "stain"))
WOVEN_FABRIC = Blueprint(
    sample_woven_fabric, render_woven_fabric, {"broken_thread": broken_thread}, ("hole",)
)
WOOD_GRAIN = Blueprint(sample_wood_grain, render_wood_grain, surface=("crack", "scratch"))
