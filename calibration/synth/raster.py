"""Anti-aliased drawing on float canvases: the few primitives every synthetic part is built from.

Shapes are rasterised by OpenCV into 8-bit coverage layers (sub-pixel placement through ``shift``) and
composited in float32, so a part is a stack of "paint this colour with this coverage" steps and a defect's
mask is simply where its coverage is non-zero. Pictures are held as planes (3, H, W) while being drawn:
numpy broadcasts a per-pixel opacity over three long planes several times faster than over interleaved
pixels, which is most of what keeps one part to a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SHIFT = 4
_ONE = 1 << SHIFT

Colour = np.ndarray  # (3,) float32 RGB in 0-255, or a (3, H, W) float32 picture to paint from


def fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates in OpenCV's fixed-point form, so edges land between pixels correctly."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


def _coverage(layer: np.ndarray) -> np.ndarray:
    return layer.astype(np.float32) * np.float32(1 / 255)


def polygons(size: int, polys: Sequence[np.ndarray]) -> np.ndarray:
    """Coverage (0-1) of the union of filled polygons."""
    layer = np.zeros((size, size), np.uint8)
    if polys:
        cv2.fillPoly(layer, [fixed(p) for p in polys], 255, cv2.LINE_AA, SHIFT)
    return _coverage(layer)


_ROUND = np.exp(1j * np.linspace(0, 2 * np.pi, 48, endpoint=False))


def discs(size: int, circles: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Coverage of the union of filled circles given as (cx, cy, r).

    Drawn as 48-gons: OpenCV's anti-aliased ``circle`` turns radii of a few pixels into plus signs.
    """
    outlines = [np.stack([cx + r * _ROUND.real, cy + r * _ROUND.imag], axis=1) for cx, cy, r in circles]
    return polygons(size, outlines)


def ellipses(size: int, shapes: Sequence[tuple[float, float, float, float, float]]) -> np.ndarray:
    """Coverage of the union of filled ellipses given as (cx, cy, semi-axis a, semi-axis b, angle deg)."""
    layer = np.zeros((size, size), np.uint8)
    for cx, cy, a, b, angle in shapes:
        centre = (round(cx * _ONE), round(cy * _ONE))
        axes = (round(a * _ONE), round(b * _ONE))
        cv2.ellipse(layer, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
    return _coverage(layer)


def polylines(size: int, lines: Sequence[np.ndarray], thickness: int) -> np.ndarray:
    """Coverage of open polylines of the given stroke width."""
    layer = np.zeros((size, size), np.uint8)
    cv2.polylines(layer, [fixed(p) for p in lines], False, 255, thickness, cv2.LINE_AA, SHIFT)
    return _coverage(layer)


def frac(x: np.ndarray) -> np.ndarray:
    """Fractional part; ``x % 1`` is some fifty times slower on float arrays."""
    return x - np.floor(x)


def pick(cond: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``np.where`` for a 0/1 float ``cond``, as arithmetic: several times faster than a boolean select."""
    return b + cond * (a - b)


def over(image: np.ndarray, alpha: np.ndarray, colour: Colour) -> None:
    """Paint ``colour`` onto planes ``image`` (in place) with per-pixel opacity ``alpha``.

    Only the bounding box of the coverage is touched: most shapes are small, the frame is not.
    """
    x, y, w, h = cv2.boundingRect((alpha > 0).view(np.uint8))
    if w == 0:
        return
    window = image[:, y : y + h, x : x + w]
    paint = colour[:, None, None] if colour.ndim == 1 else colour[:, y : y + h, x : x + w]
    window += alpha[y : y + h, x : x + w] * (paint - window)


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), shared read-only between parts of one size."""
    x, y = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def unit_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zero-mean, unit-variance noise, near enough Gaussian (a sum of two uniforms) and four times cheaper.

    Sensor grain and the raw material of fibres and brush marks need no exact distribution, only speed.
    """
    raw = np.frombuffer(rng.bytes(2 * size * size), np.uint8).reshape(2, size, size)
    total = raw.sum(axis=0, dtype=np.float32)
    total -= np.float32(255)
    total *= np.float32(1 / 104.5)
    return total


def smooth(noise: np.ndarray, size: int) -> np.ndarray:
    """A coarse random grid upsampled to a smooth field (unit-ish amplitude): blotches, dye, warp.

    Cubic up to a 32-px grid, then linear: as smooth to the eye, and OpenCV's float32 cubic resize from a
    tiny grid straight to full size is ten times slower.
    """
    coarse = cv2.resize(noise.astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)


def bands(noise: np.ndarray, size: int) -> np.ndarray:
    """A coarse 1-D noise stretched over ``size`` rows (a column that broadcasts across): parallel bands."""
    return cv2.resize(noise.reshape(-1, 1).astype(np.float32), (1, size), interpolation=cv2.INTER_CUBIC)


def streaks(noise: np.ndarray, length: int, vertical: bool = False) -> np.ndarray:
    """White noise smeared along one axis into fibres or brush marks, rescaled back to unit variance."""
    length = max(1, length)
    kernel = (1, length) if vertical else (length, 1)
    return cv2.blur(noise, kernel, borderType=cv2.BORDER_REFLECT101) * np.float32(np.sqrt(length))


def rotate(field: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate a field about its centre; reflected borders keep a texture seamless at the frame edge."""
    size = field.shape[0]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle_deg, 1.0)
    return cv2.warpAffine(
        field, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )


@dataclass(frozen=True)
class Lighting:
    """Uneven illumination of a real station: overall gain, a linear falloff and a soft vignette."""

    gain: float
    gradient: tuple[float, float]
    vignette: float
    centre: tuple[float, float]

    @classmethod
    def sample(cls, rng: np.random.Generator, vignette: tuple[float, float] = (0.04, 0.12)) -> Lighting:
        angle = rng.uniform(0, 2 * np.pi)
        slope = rng.uniform(0.0, 0.08)
        return cls(
            gain=float(rng.uniform(0.9, 1.08)),
            gradient=(float(slope * np.cos(angle)), float(slope * np.sin(angle))),
            vignette=float(rng.uniform(*vignette)),
            centre=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
        )

    def field(self, size: int) -> np.ndarray:
        """Multiplicative light level per pixel, about 1."""
        u = (np.arange(size, dtype=np.float32) / size - self.centre[0])[None, :]
        v = (np.arange(size, dtype=np.float32) / size - self.centre[1])[:, None]
        slope = self.gain * (2 * self.gradient[0] * u + 1) + self.gain * 2 * self.gradient[1] * v
        return (slope * (1 - 2 * self.vignette * (u * u + v * v))).astype(np.float32)


def r2(values: object) -> list:
    """Coordinates for the metadata, to a hundredth of a pixel (far below what any tool resolves)."""
    return np.round(np.asarray(values, dtype=np.float64), 2).tolist()


def rgb(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def tinted(level: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """Grey levels (H, W) to RGB planes of the given tint (per-channel factors)."""
    return tint[:, None, None] * level


def interleaved(planes: np.ndarray) -> np.ndarray:
    """Float planes (3, H, W) to the project's frame: H x W x 3 uint8 RGB, rounded and clipped."""
    np.clip(planes, 0, 255, out=planes)
    return cv2.merge([np.rint(plane).astype(np.uint8) for plane in planes])
