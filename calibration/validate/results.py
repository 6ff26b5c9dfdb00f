"""``results.jsonl``: one line per finished image, the unit a validation run caches and resumes by.

A line holds the sample's ground truth (so metrics, reports and comparisons never need the dataset again),
the box scores against its mask, and the station's verdict with its full trace. Lines are appended and
flushed to disk as each image finishes; a run killed mid-write leaves at most one broken last line, which
reading skips, so that image is simply inspected again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ValidationError

from calibration.datasets import Sample
from calibration.metrics.localization import BoxScore, PixelBox
from station.verdict import Verdict

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


class Result(BaseModel):
    key: str  # Sample.key: what the run caches by
    image: str
    category: str
    label: int  # 0 good, 1 defective
    defect: str
    mask: str | None
    region: tuple[int, int, int, int] | None = None
    dataset: str
    gt_boxes: list[PixelBox] = []  # connected components of the mask, pixels of the inspected image
    localization: BoxScore | None = None  # the answered box against the mask (`metrics.localization`)
    verdict: Verdict

    @property
    def rejected(self) -> bool:
        return self.verdict.rejected

    @property
    def correct(self) -> bool:
        return self.rejected == bool(self.label)

    @property
    def score(self) -> float:
        """The ranking score: the confidence, or the decision itself where there is none (fail-safes)."""
        confidence = self.verdict.confidence
        return float(self.rejected) if confidence is None else confidence

    def sample(self) -> Sample:
        """The dataset sample again, to reload its image and mask (for the report's gallery)."""
        return Sample(
            image=Path(self.image),
            category=self.category,
            label=self.label,
            defect=self.defect,
            mask=None if self.mask is None else Path(self.mask),
            dataset=self.dataset,
            region=self.region,
        )


def read_results(path: Path) -> tuple[dict[str, Result], int]:
    """The results in a file by key (a later line wins), and how many lines were unreadable."""
    results: dict[str, Result] = {}
    broken = 0
    if not path.exists():
        return results, broken
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                result = Result.model_validate_json(line)
            except ValidationError as error:
                broken += 1
                log.warning(
                    "%s:%d: skipping an unreadable result (%s)", path, number, error.errors()[0]["msg"]
                )
                continue
            results[result.key] = result
    return results, broken


def write_results(path: Path, results: Iterable[Result]) -> None:
    """Replace the file with exactly these results, atomically (a crash leaves the old file or the new)."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        out.writelines(result.model_dump_json() + "\n" for result in results)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


class ResultLog:
    """The append side of ``results.jsonl``: one flushed and synced line per image, so a kill loses at most
    the image being written."""

    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def append(self, result: Result) -> None:
        self._file.write(result.model_dump_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
