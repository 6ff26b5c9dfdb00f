"""One interface over every image source re-validation reads: public benchmarks as distributed, plain
folders, and the station's own audit database.

A loader yields `Sample`s; it never copies or converts the dataset. A loader pointed at the wrong or a
partial folder raises `DatasetError` saying what layout it expected.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOOD = "good"


class DatasetError(ValueError):
    """A dataset folder that does not have the layout its loader expects; the message says which."""


@dataclass(frozen=True)
class Sample:
    """One image to inspect with its ground truth."""

    image: Path
    category: str
    label: int  # 0 good, 1 defective
    defect: str  # GOOD or the dataset's defect type name
    mask: Path | None  # ground-truth mask (any non-zero pixel is defect), None when the dataset has none
    dataset: str  # loader kind, e.g. "mvtec"
    # Pixel region (x1, y1, x2, y2) of the file that forms the sample, for datasets cut into pieces (SDD).
    region: tuple[int, int, int, int] | None = None

    @property
    def key(self) -> str:
        """Stable identity of the sample across runs (results are cached under it)."""
        suffix = "" if self.region is None else "@" + ",".join(map(str, self.region))
        return f"{self.dataset}:{self.category}:{self.image}{suffix}"

    def load_image(self) -> np.ndarray:
        from tools.image import load_image

        return _cut(load_image(self.image), self.region)

    def load_mask(self) -> np.ndarray | None:
        """Binary mask (bool HxW) aligned with `load_image`, or None without a mask file."""
        if self.mask is None:
            return None
        import cv2

        mask = cv2.imread(str(self.mask), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise DatasetError(f"cannot read mask {self.mask}")
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        return _cut(mask > 0, self.region)


def _cut(array: np.ndarray, region: tuple[int, int, int, int] | None) -> np.ndarray:
    if region is None:
        return array
    x1, y1, x2, y2 = region
    return array[y1:y2, x1:x2]


class DatasetLoader(ABC):
    """A dataset root opened for reading; ``categories`` restricts which are yielded (None: all)."""

    kind: str = "dataset"

    def __init__(self, root: str | Path, categories: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.kind}: {self.root} is not a directory")
        self.selected = list(categories) if categories else None

    @abstractmethod
    def categories(self) -> list[str]:
        """Every category present under the root."""

    @abstractmethod
    def samples(self) -> Iterator[Sample]:
        """The evaluation samples of the selected categories, in a deterministic order."""

    def _check_selection(self) -> list[str]:
        present = self.categories()
        if self.selected is None:
            return present
        missing = [c for c in self.selected if c not in present]
        if missing:
            raise DatasetError(
                f"{self.kind}: categories not found under {self.root}: {', '.join(missing)}; present: "
                f"{', '.join(present)}"
            )
        return self.selected
