"""One synthetic part at a time: the reusable core that the dataset writer and training rollouts share.

The order in which randomness is drawn is the point of this module: the good part (layout, then sensor
noise) first, the defect last. Two calls from the same generator state with and without a defect therefore
give the same part, differing only inside the defect's mask, which is how the masks are tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.synth.blueprint import Blueprint
from calibration.synth.defects import SURFACE_DEFECTS
from calibration.synth.objects import HOLE_PLATE, PIN_CONNECTOR, SCREW
from calibration.synth.raster import interleaved, unit_noise
from calibration.synth.textures import BRUSHED_METAL, WOOD_GRAIN, WOVEN_FABRIC

MIN_SIZE = 64

BLUEPRINTS: dict[str, Blueprint] = {
    "brushed_metal": BRUSHED_METAL,
    "woven_fabric": WOVEN_FABRIC,
    "wood_grain": WOOD_GRAIN,
    "hole_plate": HOLE_PLATE,
    "pin_connector": PIN_CONNECTOR,
    "lag_screw": SCREW,
}

CATEGORIES: dict[str, tuple[str, ...]] = {name: blueprint.defects for name, blueprint in BLUEPRINTS.items()}


@dataclass
class SynthPart:
    """A generated part: RGB uint8 image, 0/255 defect mask (all zero when good), known geometry."""

    image: np.ndarray
    mask: np.ndarray
    geometry: dict[str, Any]
    defect: str | None

    @property
    def label(self) -> str:
        return "good" if self.defect is None else "defective"


def generate_part(category: str, defect: str | None, size: int, rng: np.random.Generator) -> SynthPart:
    """Draw one part of ``category`` (``defect`` None or "good" for a good one) as a ``size``-px square.

    Geometry is in pixels of the returned image; a defective part's geometry also carries ``change``: what
    the defect altered, its bounding box [x1, y1, x2, y2) and its area in pixels.
    """
    if category not in BLUEPRINTS:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(BLUEPRINTS)}")
    blueprint = BLUEPRINTS[category]
    defect = None if defect in (None, "good") else defect
    if defect is not None and defect not in blueprint.defects:
        raise ValueError(f"{category} has no defect {defect!r}; it has: {', '.join(blueprint.defects)}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} px, got {size}")

    layout = blueprint.sample(size, rng)
    noise = unit_noise(rng, size) * np.float32(rng.uniform(*blueprint.noise))
    mask = np.zeros((size, size), bool)
    change: dict[str, Any] = {}
    if defect in blueprint.reshapes:
        reshaped = blueprint.reshapes[defect](layout, rng)
        layout, mask, change = reshaped.layout, reshaped.mask, reshaped.change
    rendered = blueprint.render(layout)
    if defect in blueprint.surface:
        mask, change = SURFACE_DEFECTS[defect](rendered.image, rendered.region, rng)

    rendered.image += noise
    image = interleaved(rendered.image)
    geometry = rendered.geometry
    if defect is not None:
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.size else None
        geometry["change"] = {**change, "bbox": box, "area_px": int(xs.size)}
    return SynthPart(image, mask.astype(np.uint8) * 255, geometry, defect)
