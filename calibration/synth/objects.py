"""Object categories: parts with countable, measurable structure, and the geometric defects that break it.

A hole plate (regular grid), a pin connector (a row at a fixed pitch) and a screw (a thread pitch along an
axis) give the ``measure`` tool known answers: every layout records where its features were drawn, in
pixels of the written image. Geometric defects change the layout before drawing, so the mask is the union of
the footprints before and after, exactly the pixels that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from calibration.synth.blueprint import Blueprint, Rendered, Reshaped
from calibration.synth.raster import (
    Lighting,
    discs,
    frac,
    grid,
    over,
    pick,
    polygons,
    r2,
    rgb,
    smooth,
    streaks,
    tinted,
    unit_noise,
)

_ARC = np.radians(np.linspace(0, 90, 7))[None, :] + np.radians([-90, 0, 90, 180])[:, None]
_ARC_COS, _ARC_SIN = np.cos(_ARC), np.sin(_ARC)


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, radius: float) -> np.ndarray:
    cx = np.array([x1, x1, x0, x0]) + radius * np.array([-1, -1, 1, 1])
    cy = np.array([y0, y1, y1, y0]) + radius * np.array([1, -1, -1, 1])
    xs, ys = cx[:, None] + radius * _ARC_COS, cy[:, None] + radius * _ARC_SIN
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def _backdrop(size: int, level: np.ndarray, blotches: np.ndarray) -> np.ndarray:
    """A plain but not perfectly flat background: the table or fixture the part lies on."""
    return tinted(1 + 0.025 * smooth(blotches, size), level)


# --- hole plate -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HolePlate:
    """A machined plate with a drilled grid; ``holes`` are hole centres in drawing order (row-major)."""

    size: int
    light: Lighting
    backdrop: np.ndarray
    blotches: np.ndarray
    plate: tuple[float, float, float, float]
    metal: np.ndarray
    brush: np.ndarray
    pitch: tuple[float, float]
    radius: float
    chamfer: float
    grid_shape: tuple[int, int]
    holes: tuple[tuple[float, float], ...]


def sample_hole_plate(size: int, rng: np.random.Generator) -> HolePlate:
    k = size / 256
    cols, rows = 4, 4
    pitch = (48 * k * rng.uniform(0.97, 1.03), 44 * k * rng.uniform(0.97, 1.03))
    cx, cy = size / 2 + rng.uniform(-6, 6, 2) * k
    half_w, half_h = (cols - 1) * pitch[0] / 2 + 0.8 * pitch[0], (rows - 1) * pitch[1] / 2 + 0.85 * pitch[1]
    x0, y0 = cx - (cols - 1) * pitch[0] / 2, cy - (rows - 1) * pitch[1] / 2
    holes = tuple((x0 + i * pitch[0], y0 + j * pitch[1]) for j in range(rows) for i in range(cols))
    return HolePlate(
        size=size,
        light=Lighting.sample(rng),
        backdrop=rgb(38, 40, 44) * np.float32(rng.uniform(0.85, 1.15)),
        blotches=rng.standard_normal((5, 5), dtype=np.float32),
        plate=(cx - half_w, cy - half_h, cx + half_w, cy + half_h),
        metal=rgb(168, 170, 174) * np.float32(rng.uniform(0.9, 1.05)),
        brush=unit_noise(rng, size),
        pitch=(float(pitch[0]), float(pitch[1])),
        radius=float(8.5 * k * rng.uniform(0.95, 1.05)),
        chamfer=2.2 * k,
        grid_shape=(cols, rows),
        holes=tuple((float(x), float(y)) for x, y in holes),
    )


def _hole_footprint(p: HolePlate, centres: list[tuple[float, float]]) -> np.ndarray:
    return discs(p.size, [(x, y, p.radius + p.chamfer) for x, y in centres]) > 0


def render_hole_plate(p: HolePlate) -> Rendered:
    k = p.size / 256
    image = _backdrop(p.size, p.backdrop, p.blotches)
    x0, y0, x1, y1 = p.plate
    bevel = 2.5 * k
    over(image, polygons(p.size, [_rounded_rect(x0, y0, x1, y1, 10 * k)]), p.metal * 0.62)
    top = polygons(p.size, [_rounded_rect(x0 + bevel, y0 + bevel, x1 - bevel, y1 - bevel, 10 * k - bevel)])
    brushed = tinted(1 + 0.022 * streaks(p.brush, round(48 * k)), p.metal)
    over(image, top, brushed)
    chamfer = discs(p.size, [(x, y, p.radius + p.chamfer) for x, y in p.holes])
    bore = discs(p.size, [(x, y, p.radius) for x, y in p.holes])
    # The far wall of each bore catches the light: the bore minus itself shifted towards the lamp.
    lamp = 0.3 * p.radius
    wall = np.clip(bore - discs(p.size, [(x - lamp, y - lamp, p.radius) for x, y in p.holes]), 0, 1)
    over(image, chamfer, np.minimum(p.metal * 1.28, 250))
    over(image, bore, p.backdrop * 0.45)
    over(image, wall, p.metal * 0.5)
    image *= p.light.field(p.size)
    geometry = {
        "holes": [r2([x, y, p.radius]) for x, y in p.holes],
        "pitch_px": r2(p.pitch),
        "grid": list(p.grid_shape),
    }
    return Rendered(image, top * (1 - chamfer), geometry)


def missing_hole(p: HolePlate, rng: np.random.Generator) -> Reshaped:
    index = int(rng.integers(len(p.holes)))
    gone = p.holes[index]
    holes = p.holes[:index] + p.holes[index + 1 :]
    change = {"index": index, "hole": r2([*gone, p.radius])}
    return Reshaped(replace(p, holes=holes), _hole_footprint(p, [gone]), change)


def extra_hole(p: HolePlate, rng: np.random.Generator) -> Reshaped:
    """A hole drilled off the grid, in the middle of a cell where no hole belongs."""
    cols, rows = p.grid_shape
    i, j = int(rng.integers(cols - 1)), int(rng.integers(rows - 1))
    jitter = rng.uniform(-0.1, 0.1, 2)
    x = p.holes[0][0] + (i + 0.5 + jitter[0]) * p.pitch[0]
    y = p.holes[0][1] + (j + 0.5 + jitter[1]) * p.pitch[1]
    change = {"index": len(p.holes), "hole": r2([x, y, p.radius])}
    return Reshaped(replace(p, holes=(*p.holes, (x, y))), _hole_footprint(p, [(x, y)]), change)


def wrong_spacing(p: HolePlate, rng: np.random.Generator) -> Reshaped:
    """One hole drilled off its grid position along a row or a column."""
    index = int(rng.integers(len(p.holes)))
    axis = int(rng.integers(2))
    shift = [0.0, 0.0]
    shift[axis] = float(rng.choice([-1, 1]) * rng.uniform(0.2, 0.3) * p.pitch[axis])
    old = p.holes[index]
    new = (old[0] + shift[0], old[1] + shift[1])
    holes = (*p.holes[:index], new, *p.holes[index + 1 :])
    change = {"index": index, "shift_px": r2(shift)}
    return Reshaped(replace(p, holes=holes), _hole_footprint(p, [old, new]), change)


# --- pin connector ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """A pin standing on the connector body: base centre x, and a bend about its base (degrees, + = right)."""

    x: float
    bend: float = 0.0


@dataclass(frozen=True)
class PinConnector:
    size: int
    light: Lighting
    backdrop: np.ndarray
    blotches: np.ndarray
    body: tuple[float, float, float, float]
    plastic: np.ndarray
    gold: np.ndarray
    pitch: float
    pin_width: float
    pin_length: float
    sockets: tuple[float, ...]
    pins: tuple[Pin, ...]


def sample_pin_connector(size: int, rng: np.random.Generator) -> PinConnector:
    k = size / 256
    count, pitch = 6, 26 * k
    cx = size / 2 + rng.uniform(-8, 8) * k
    top = size * 0.56 + rng.uniform(-6, 6) * k
    half = count * pitch / 2 + 22 * k
    first = cx - (count - 1) * pitch / 2
    return PinConnector(
        size=size,
        light=Lighting.sample(rng),
        backdrop=rgb(186, 190, 196) * np.float32(rng.uniform(0.9, 1.06)),
        blotches=rng.standard_normal((5, 5), dtype=np.float32),
        body=(cx - half, top, cx + half, top + 60 * k),
        plastic=rgb(44, 44, 50) * np.float32(rng.uniform(0.85, 1.2)),
        gold=rgb(214, 172, 86) * rgb(*rng.uniform(0.94, 1.04, 3)),
        pitch=float(pitch),
        pin_width=7 * k,
        pin_length=float(58 * k * rng.uniform(0.96, 1.04)),
        sockets=tuple(float(first + i * pitch) for i in range(count)),
        pins=tuple(Pin(float(first + i * pitch)) for i in range(count)),
    )


def _pin_polygon(p: PinConnector, pin: Pin, across: np.ndarray, along: np.ndarray) -> np.ndarray:
    """Pin-local points (across its width, up its length from the base) placed in the image."""
    a = np.radians(pin.bend)
    xs = pin.x + across * np.cos(a) + along * np.sin(a)
    ys = p.body[1] + across * np.sin(a) - along * np.cos(a)
    return np.stack([xs, ys], axis=1)


def _pin_outline(p: PinConnector, pin: Pin) -> np.ndarray:
    """The whole pin: a flat bar with a chamfered tip."""
    half, length, tip = p.pin_width / 2, p.pin_length, 0.35 * p.pin_width
    across = np.array([-half, -half, tip - half, half - tip, half, half])
    along = np.array([0.0, length - tip, length, length, length - tip, 0.0])
    return _pin_polygon(p, pin, across, along)


def _pin_strip(p: PinConnector, pin: Pin, left: float, right: float) -> np.ndarray:
    """A lengthwise strip of the pin between fractions of its width: the highlight and the shaded flank."""
    across = np.array([left, left, right, right]) * p.pin_width
    along = np.array([0.0, 1.0, 1.0, 0.0]) * (p.pin_length - 0.35 * p.pin_width)
    return _pin_polygon(p, pin, across, along)


def _box(outline: np.ndarray) -> list:
    return r2([*outline.min(axis=0), *outline.max(axis=0)])


def _pin_footprint(p: PinConnector, pins: list[Pin]) -> np.ndarray:
    return polygons(p.size, [_pin_outline(p, pin) for pin in pins]) > 0


def render_pin_connector(p: PinConnector) -> Rendered:
    k = p.size / 256
    image = _backdrop(p.size, p.backdrop, p.blotches)
    x0, y0, x1, y1 = p.body
    shadow = _rounded_rect(x0 + 3 * k, y0 + 4 * k, x1 + 3 * k, y1 + 5 * k, 5 * k)
    over(image, polygons(p.size, [shadow]), p.backdrop * 0.6)
    over(image, polygons(p.size, [_rounded_rect(x0, y0, x1, y1, 4 * k)]), p.plastic)
    face = 11 * k
    over(image, polygons(p.size, [_rounded_rect(x0, y0, x1, y0 + face, 3 * k)]), p.plastic * 1.6)
    ears = discs(
        p.size, [(x0 + 11 * k, (y0 + y1) / 2 + 6 * k, 5 * k), (x1 - 11 * k, (y0 + y1) / 2 + 6 * k, 5 * k)]
    )
    over(image, ears, p.plastic * 0.35)
    w = 0.8 * p.pin_width
    sockets = [_rounded_rect(x - w, y0 + 2 * k, x + w, y0 + 8 * k, k) for x in p.sockets]
    over(image, polygons(p.size, sockets), p.plastic * 0.55)
    pins = p.pins
    over(image, polygons(p.size, [_pin_outline(p, pin) for pin in pins]), p.gold * 0.78)
    over(
        image,
        polygons(p.size, [_pin_strip(p, pin, -0.3, -0.02) for pin in pins]),
        np.minimum(p.gold * 1.18, 255),
    )
    over(image, polygons(p.size, [_pin_strip(p, pin, 0.28, 0.5) for pin in pins]), p.gold * 0.55)
    image *= p.light.field(p.size)
    geometry = {"pins": [_box(_pin_outline(p, pin)) for pin in pins], "pitch_px": round(p.pitch, 3)}
    region = polygons(p.size, [_rounded_rect(x0, y0 + face, x1, y1, 4 * k)])
    return Rendered(image, region, geometry)


def missing_pin(p: PinConnector, rng: np.random.Generator) -> Reshaped:
    index = int(rng.integers(len(p.pins)))
    gone = p.pins[index]
    change = {"index": index, "box": _box(_pin_outline(p, gone))}
    pins = p.pins[:index] + p.pins[index + 1 :]
    return Reshaped(replace(p, pins=pins), _pin_footprint(p, [gone]), change)


def shifted_pin(p: PinConnector, rng: np.random.Generator) -> Reshaped:
    """A pin pressed in off its position along the row, leaving a gap on one side."""
    index = int(rng.integers(len(p.pins)))
    dx = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.4) * p.pitch)
    old = p.pins[index]
    new = replace(old, x=old.x + dx)
    pins = (*p.pins[:index], new, *p.pins[index + 1 :])
    change = {"index": index, "shift_px": r2([dx, 0.0])}
    return Reshaped(replace(p, pins=pins), _pin_footprint(p, [old, new]), change)


def bent_pin(p: PinConnector, rng: np.random.Generator) -> Reshaped:
    """A pin bent sideways about its base; small enough not to touch its neighbour."""
    index = int(rng.integers(len(p.pins)))
    bend = float(rng.choice([-1, 1]) * rng.uniform(9, 16))
    old = p.pins[index]
    new = replace(old, bend=bend)
    pins = (*p.pins[:index], new, *p.pins[index + 1 :])
    a = np.radians(bend)
    tip = [p.pin_length * np.sin(a), p.pin_length * (1 - np.cos(a))]
    change = {"index": index, "bend_deg": round(bend, 2), "tip_shift_px": r2(tip)}
    return Reshaped(replace(p, pins=pins), _pin_footprint(p, [old, new]), change)


# --- screw ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screw:
    """A screw lying on a table, from its head end along ``angle``; lengths in pixels along the axis.

    ``missing`` is a stretch of the thread (axial start, end) where the crests are worn or never rolled.
    """

    size: int
    light: Lighting
    backdrop: np.ndarray
    blotches: np.ndarray
    metal: np.ndarray
    start: tuple[float, float]
    angle: float
    length: float
    head_length: float
    head_radius: float
    major: float
    minor: float
    thread_from: float
    pitch: float
    helix: float
    gloss: float
    missing: tuple[float, float] | None = None


def sample_screw(size: int, rng: np.random.Generator) -> Screw:
    k = size / 256
    angle = np.radians(rng.uniform(-15, 15) + 180 * rng.integers(2))
    length = 190 * k * rng.uniform(0.96, 1.04)
    cx, cy = size / 2 + rng.uniform(-8, 8, 2) * k
    return Screw(
        size=size,
        light=Lighting.sample(rng),
        backdrop=rgb(204, 204, 200) * np.float32(rng.uniform(0.9, 1.05)),
        blotches=rng.standard_normal((5, 5), dtype=np.float32),
        metal=rgb(150, 152, 158) * np.float32(rng.uniform(0.85, 1.1)),
        start=(float(cx - length / 2 * np.cos(angle)), float(cy - length / 2 * np.sin(angle))),
        angle=float(angle),
        length=float(length),
        head_length=30 * k,
        head_radius=25 * k,
        major=14 * k,
        minor=10.5 * k,
        thread_from=52 * k,
        pitch=float(9 * k * rng.uniform(0.95, 1.05)),
        helix=float(rng.uniform(0.15, 0.25)),
        gloss=float(rng.uniform(0.25, 0.45)),
    )


def _axial(p: Screw) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's position along the screw axis (from the head end) and across it."""
    x, y = grid(p.size)
    c, s = np.float32(np.cos(p.angle)), np.float32(np.sin(p.angle))
    rx, ry = x - np.float32(p.start[0]), y - np.float32(p.start[1])
    return rx * c + ry * s, ry * c - rx * s


def _on_axis(p: Screw, along: float) -> list[float]:
    return r2([p.start[0] + along * np.cos(p.angle), p.start[1] + along * np.sin(p.angle)])


def render_screw(p: Screw) -> Rendered:
    k = p.size / 256
    s, t = _axial(p)
    phase = frac(((s - p.thread_from) + t * p.helix) * np.float32(1 / p.pitch))
    tooth = 1 - np.abs(2 * phase - 1)
    shank = s >= p.thread_from
    threaded = shank & ((s < p.missing[0]) | (s > p.missing[1])) if p.missing else shank
    bare = (shank & ~threaded).astype(np.float32)
    threaded = threaded.astype(np.float32)
    radius = pick(threaded, p.minor + (p.major - p.minor) * tooth, pick(bare, p.minor + 0.6 * k, p.major))
    radius *= 0.3 + 0.7 * np.clip((p.length - s) * np.float32(0.5 / p.pitch), 0, 1)
    dome = 0.6 * p.head_length
    head = p.head_radius * np.sqrt(np.clip(1 - ((dome - np.minimum(s, dome)) / dome) ** 2, 0, 1))
    radius = pick((s < p.head_length).astype(np.float32), head, radius)
    cover = (
        np.clip(radius - np.abs(t) + 0.5, 0, 1) * np.clip(s + 0.5, 0, 1) * np.clip(p.length - s + 0.5, 0, 1)
    )
    # Cylinder shading with a specular stripe; crests catch the light, roots and the head's underside do not.
    n = np.clip(t / np.maximum(radius, 1), -1, 1)
    shade = 0.35 + 0.65 * np.sqrt(1 - n * n) + p.gloss * np.exp(-(((n + 0.4) / 0.15) ** 2))
    shade *= 1 - threaded * 0.28 * (1 + np.cos(np.float32(2 * np.pi) * phase))
    shade *= 1 - 0.55 * np.exp(-(((s - p.head_length) / (1.5 * k)) ** 2))
    image = _backdrop(p.size, p.backdrop, p.blotches)
    over(image, cover, tinted(shade, p.metal))
    image *= p.light.field(p.size)
    geometry = {
        "axis": [_on_axis(p, 0), _on_axis(p, p.length)],
        "thread_pitch_px": round(p.pitch, 3),
        "thread_span": [_on_axis(p, p.thread_from), _on_axis(p, p.length)],
        "major_diameter_px": round(2 * p.major, 2),
        "minor_diameter_px": round(2 * p.minor, 2),
        "head_length_px": round(p.head_length, 2),
    }
    return Rendered(image, cover, geometry)


def missing_thread(p: Screw, rng: np.random.Generator) -> Reshaped:
    """A few turns of thread flattened to the core, somewhere between the neck and the tip."""
    span = float(rng.uniform(3, 5) * p.pitch)
    lo, hi = p.thread_from + p.pitch, p.length - 3 * p.pitch - span
    start = float(rng.uniform(lo, hi))
    s, t = _axial(p)
    mask = (s >= start - 1) & (s <= start + span + 1) & (np.abs(t) <= p.major + 1)
    change = {
        "span": [_on_axis(p, start), _on_axis(p, start + span)],
        "length_px": round(span, 2),
        "turns": round(span / p.pitch, 2),
    }
    return Reshaped(replace(p, missing=(start, start + span)), mask, change)


HOLE_PLATE = Blueprint(
    sample_hole_plate,
    render_hole_plate,
    {"missing_hole": missing_hole, "extra_hole": extra_hole, "wrong_spacing": wrong_spacing},
    ("stain",),
)
PIN_CONNECTOR = Blueprint(
    sample_pin_connector,
    render_pin_connector,
    {"missing_pin": missing_pin, "shifted_pin": shifted_pin, "bent_pin": bent_pin},
)
SCREW = Blueprint(sample_screw, render_screw, {"missing_thread": missing_thread}, ("scratch",))
