"""Accept/reject figures from the station's own decisions.

Positive means defective. A fail-safe is a reject (the station rejects it on the line), so it counts as a
predicted defect here: on a good part it is a false reject, on a defective part a catch. How many there were
is reported apart (`failsafe.py`), so a run that "catches" defects by timing out is still visible.

The functions take arrays with any leading batch axes (the bootstrap evaluates a thousand resamples in
one call), so the point figures and their intervals come from the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from calibration.metrics.base import finite_or_none

if TYPE_CHECKING:
    from calibration.validate.results import Result


def rates(labels: np.ndarray, rejected: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts and rates over the last axis; undefined rates (0/0) are NaN.

    Balanced accuracy is the MMAD / IAD-R1 protocol figure: the mean of the accuracy on good images
    (1 - false-reject rate) and on defective images (recall). It needs both classes; with one it is NaN
    rather than the accuracy of the class present, so it never silently means something else.
    """
    labels = np.asarray(labels, dtype=bool)
    rejected = np.asarray(rejected, dtype=bool)
    tp = np.sum(labels & rejected, axis=-1)
    fp = np.sum(~labels & rejected, axis=-1)
    tn = np.sum(~labels & ~rejected, axis=-1)
    fn = np.sum(labels & ~rejected, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / (tp + fn)
        false_reject_rate = fp / (fp + tn)
        precision = tp / (tp + fp)
        return {
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "accuracy": (tp + tn) / (tp + fp + tn + fn),
            "balanced_accuracy": (recall + (1 - false_reject_rate)) / 2,
            "precision": precision,
            "recall": recall,
            "escape_rate": 1 - recall,
            "false_reject_rate": false_reject_rate,
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


class Classification:
    """Confusion counts, accuracy, balanced accuracy, precision, recall, escape and false-reject rates, F1."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.rejected: list[bool] = []

    def update(self, result: Result) -> None:
        self.labels.append(result.label)
        self.rejected.append(result.rejected)

    def compute(self) -> dict[str, int | float | None]:
        values = rates(np.array(self.labels, dtype=bool), np.array(self.rejected, dtype=bool))
        counts = {"good": self.labels.count(0), "defective": self.labels.count(1)}
        return counts | {
            name: int(value) if name in ("tp", "fp", "tn", "fn") else finite_or_none(value)
            for name, value in values.items()
        }
