"""The contract between a part category and the generator: sample a good part, reshape it, render it.

Splitting "what this part looks like" (a layout, all of its randomness drawn up front) from "draw it" (pure)
is what lets a defective part be the very same part as its good twin, changed only where the mask says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Rendered:
    """A clean (noise-free) picture of a part, float32 RGB planes (3, H, W), before sensor noise.

    ``region`` is the coverage (0-1) of the surface where surface defects may land: the plate but not its
    holes, the screw but not the background.
    """

    image: np.ndarray
    region: np.ndarray
    geometry: dict[str, Any]


@dataclass
class Reshaped:
    """A layout changed by a geometric defect, the pixels it affects and a record of what moved."""

    layout: Any
    mask: np.ndarray
    change: dict[str, Any]


Sampler = Callable[[int, np.random.Generator], Any]
Renderer = Callable[[Any], Rendered]
Reshaper = Callable[[Any, np.random.Generator], Reshaped]


@dataclass(frozen=True)
class Blueprint:
    """One category: how to sample and draw it, its geometric defects and the surface defects it admits."""

    sample: Sampler
    render: Renderer
    reshapes: Mapping[str, Reshaper] = field(default_factory=dict)
    surface: tuple[str, ...] = ()
    noise: tuple[float, float] = (1.5, 2.5)

    @property
    def defects(self) -> tuple[str, ...]:
        return (*self.reshapes, *self.surface)
