"""Image AUROC and average precision from the verdict confidence (the probability the part is defective).

The score of a verdict is its confidence; a verdict without one (a fail-safe, or an answer that stated
none) scores as its decision, 1.0 for a reject and 0.0 for an accept, so a fail-safe ranks with the most
certain rejects, which is how the line treats it.

AUROC is the Mann-Whitney statistic with average ranks, so tied scores count one half, exactly the area
under the ROC curve drawn through tie groups. AP is the step-wise sum of precision over recall increments
at each distinct score (the definition scikit-learn uses), not the interpolated trapezoid, which is
optimistic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from calibration.metrics.base import finite_or_none

if TYPE_CHECKING:
    from calibration.validate.results import Result


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    size = values.shape[-1]
    starts = np.ones(ordered.shape, dtype=bool)  # a position that opens a tie group
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(ordered.shape, dtype=bool)  # a position that closes one
    ends[..., :-1] = starts[..., 1:]
    position = np.arange(size)
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, size), axis=-1), axis=-1), axis=-1)
    ranks = np.empty_like(ordered)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks


def auroc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC over the last axis (any leading batch axes); NaN where a row lacks one of the classes."""
    labels = np.asarray(labels, dtype=bool)
    ranks = average_ranks(scores)
    positives = labels.sum(axis=-1)
    negatives = labels.shape[-1] - positives
    u = np.sum(ranks * labels, axis=-1) - positives * (positives + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return u / (positives * negatives)


def _cumulative(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when rejecting at each distinct score, from the highest down."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), labels.size - 1]
    tps = np.cumsum(labels)[last_of_tie]
    return tps, last_of_tie + 1 - tps


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) from (0, 0) to (1, 1); needs both classes."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    tps, fps = _cumulative(labels, scores)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct score, from the highest down; needs a defective image."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    tps, fps = _cumulative(labels, scores)
    return tps / tps[-1], tps / (tps + fps)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Sum over distinct scores of precision x recall gained there; NaN without a defective image."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("nan")
    recall, precision = pr_curve(labels, scores)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


class Ranking:
    """Image AUROC and AP; None where a class is missing (a category with only good images)."""

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.scores: list[float] = []

    def update(self, result: Result) -> None:
        self.labels.append(result.label)
        self.scores.append(result.score)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.labels, dtype=bool), np.array(self.scores, dtype=float)

    def compute(self) -> dict[str, float | None]:
        labels, scores = self.arrays()
        return {
            "auroc": finite_or_none(auroc(labels, scores)),
            "ap": finite_or_none(average_precision(labels, scores)),
        }
