"""Directory listing rules every loader shares, so that all datasets agree on what counts as an image.

Archives unpacked from macOS carry ``._000.png`` resource forks and ``.DS_Store`` files next to the real
images; counting those as samples would silently change a benchmark's numbers, so hidden entries are
skipped everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and visible(path) and path.is_file()


def subdirs(folder: Path) -> list[Path]:
    """Visible subfolders, sorted by name; an absent folder has none."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and visible(p))


def images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and below it when ``recursive``), sorted by path for a stable order."""
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image(p) and all(visible(q) for q in p.relative_to(folder).parents))


def by_stem(files: list[Path]) -> dict[str, Path]:
    """Index files by stem, for pairing images with masks whose extension differs (jpg image, png mask)."""
    return {p.stem: p for p in files}


def find_mask(index: dict[str, Path], stem: str, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` (patterns over ``{stem}``) present in a ``by_stem`` index of a mask folder."""
    for name in names:
        found = index.get(name.format(stem=stem))
        if found is not None:
            return found
    return None


def expected_names(folder: Path, stem: str, names: tuple[str, ...]) -> str:
    """The mask files ``find_mask`` looks for, spelled out for an error message."""
    return " or ".join(str(folder / (name.format(stem=stem) + ".png")) for name in names)


def pair_masks(files: list[Path], suffix: str) -> list[tuple[Path, Path | None]]:
    """Images kept next to their masks (``<stem><suffix>.<any ext>`` in the same folder), as (image, mask).

    The masks themselves are dropped from the images: they are image files too, and would otherwise be
    evaluated as samples.
    """
    masks = {(p.parent, p.stem[: -len(suffix)]): p for p in files if p.stem.endswith(suffix)}
    return [(p, masks.get((p.parent, p.stem))) for p in files if not p.stem.endswith(suffix)]


def absent(paths: Iterable[Path | None]) -> list[Path]:
    """Listed files that are not on disk: datasets indexed by a CSV or JSON are checked before the first
    sample, so that a partial extraction fails at once instead of halfway through an evaluation."""
    return [p for p in paths if p is not None and not p.is_file()]
