"""Miniature datasets written file by file in each benchmark's exact layout, and the checks every loader
must pass on them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.datasets import GOOD, Sample

REALDATA = Path(__file__).resolve().parents[3].parent / "shared" / "realdata"

Box = tuple[int, int, int, int]


class Tree:
    """Writes tiny image, mask and text files under one root; every call returns the path it wrote."""

    def __init__(self, root: Path):
        self.root = root

    def _write(self, rel: str, array: np.ndarray) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), array), path
        return path

    def image(self, rel: str, width: int = 16, height: int = 12, colour: bool = True) -> Path:
        """A gradient, so that every piece of an image differs from every other piece."""
        grey = np.add.outer(np.arange(height) * 7, np.arange(width) * 3).astype(np.uint8)
        return self._write(rel, cv2.merge([grey, grey // 2, 255 - grey]) if colour else grey)

    def mask(
        self, rel: str, width: int = 16, height: int = 12, box: Box | None = (2, 2, 6, 5), on: int = 255
    ) -> Path:
        """One channel: ``box`` (x1, y1, x2, y2) set to ``on``, the rest 0 (all 0 when ``box`` is None)."""
        mask = np.zeros((height, width), np.uint8)
        if box is not None:
            x1, y1, x2, y2 = box
            mask[y1:y2, x1:x2] = on
        return self._write(rel, mask)

    def text(self, rel: str, content: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return path


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path / "dataset")


def rel(samples: Iterable[Sample], root: Path) -> list[str]:
    """Image paths relative to the dataset root, in the order the loader gave them."""
    return [s.image.relative_to(root).as_posix() for s in samples]


def check_samples(samples: list[Sample], kind: str) -> None:
    """What holds for every loader: labels agree with defect names, good samples carry no mask, and masks
    load binary and pixel-aligned with their image (regions included)."""
    assert samples
    for sample in samples:
        assert sample.dataset == kind
        assert sample.label in (0, 1)
        assert (sample.label == 0) == (sample.defect == GOOD)
        if sample.label == 0:
            assert sample.mask is None
        mask = sample.load_mask()
        if mask is not None:
            assert mask.dtype == bool
            assert mask.shape == sample.load_image().shape[:2]
            assert mask.any() == bool(sample.label)


@pytest.fixture
def realdata() -> Path:
    if not (REALDATA / "manifest.csv").is_file():
        pytest.skip(f"no real benchmark images at {REALDATA}")
    return REALDATA


@pytest.fixture(name="rel")
def rel_fixture() -> Callable[[Iterable[Sample], Path], list[str]]:
    return rel


@pytest.fixture(name="check_samples")
def check_samples_fixture() -> Callable[[list[Sample], str], None]:
    return check_samples
