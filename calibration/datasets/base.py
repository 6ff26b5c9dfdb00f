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
        return _cut(read_mask(self.mask), self.region)


def read_mask(path: Path) -> np.ndarray:
    """A ground-truth file as bool HxW, whatever the benchmark stored: 0/255, 0/1, class ids, 16 bit, colour.

    Loaders that derive labels from masks (KolektorSDD) read through here too, so a label and the mask it
    came from can never disagree.
    """
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f"cannot read mask {path}: {error}") from error
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise DatasetError(f"cannot read mask {path}")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 0


def _cut(array: np.ndarray, region: tuple[int, int, int, int] | None) -> np.ndarray:
    if region is None:
        return array
    x1, y1, x2, y2 = region
    return array[y1:y2, x1:x2]


class DatasetLoader(ABC):
    """A dataset root opened for reading; ``categories`` restricts which are yielded (None: all).

    Opening lists and checks every sample of the selected categories (file names only; labels read from
    masks where the dataset has no other), so a wrong or partial folder fails before any inference runs
    rather than hours in, at the category that is missing a file.
    """

    kind: str = "dataset"
    # The layout the loader reads, as error messages show it to someone pointing at the wrong folder.
    layout: str = "<root>"
    # What an empty category listing means for this layout, for the same message.
    none_found: str = "found no category"

    def __init__(self, root: str | Path, categories: Sequence[str] | None = None):
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(f"{self.kind}: {self.root} does not exist")
        if not self.root.is_dir():
            raise DatasetError(f"{self.kind}: {self.root} is not a directory")
        self.selected = list(dict.fromkeys(categories)) if categories else None
        self._samples = {category: self._load(category) for category in self._check_selection()}

    @abstractmethod
    def categories(self) -> list[str]:
        """Every category present under the root."""

    @abstractmethod
    def _load(self, category: str) -> list[Sample]:
        """One category's samples in order, raising `layout_error` where the layout is incomplete."""

    def samples(self) -> Iterator[Sample]:
        """The evaluation samples of the selected categories, in a deterministic order."""
        for samples in self._samples.values():
            yield from samples

    def layout_error(self, problem: str) -> DatasetError:
        """The error for a folder not (or not all) in the expected layout: expectation, finding, contents."""
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir())
        listing = ", ".join(entries[:12]) + (", ..." if len(entries) > 12 else "") if entries else "nothing"
        return DatasetError(f"{self.kind}: expected {self.layout}; {problem} (under {self.root}: {listing})")

    def _check_selection(self) -> list[str]:
        present = self.categories()
        if not present:
            raise self.layout_error(self.none_found)
        if self.selected is None:
            return present
        missing = [c for c in self.selected if c not in present]
        if missing:
            raise DatasetError(
                f"{self.kind}: categories not found under {self.root}: {', '.join(missing)}; present: "
                f"{', '.join(present)}"
            )
        return self.selected
