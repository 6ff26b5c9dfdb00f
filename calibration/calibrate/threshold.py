"""Choosing a product's decision threshold from a validation run, for a target escape or false-reject rate.

A part is rejected when its defect probability is at least the threshold; a fail-safe is rejected at every
threshold (the station rejects it on the line), and a verdict without a confidence keeps its recorded
decision. The candidates are the confidences the run observed (and 1.0, which rejects no confident part):
between two observed values every threshold decides the run's images alike, so the rates reported for the
chosen value are exactly what it does on those images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from calibration.calibrate import CalibrationError
from calibration.validate.results import RESULTS_FILE, read_results

Target = Literal["escape_rate", "false_reject_rate"]


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    target: Target
    target_rate: float
    escape_rate: float  # missed defects / defective images
    false_reject_rate: float  # rejected good images / good images
    good: int
    defective: int
    fail_safes: int  # rejects at every threshold; they bound the false-reject rate from below

    @property
    def images(self) -> int:
        return self.good + self.defective


def choose_threshold(run: Path, category: str, target: Target, rate: float) -> ThresholdChoice:
    """The highest threshold meeting an escape-rate target (fewest false rejects for that recall), or the
    lowest meeting a false-reject target (most defects caught for that cost)."""
    labels, confidence, recorded = _scores(run, category)
    known = ~np.isnan(confidence)
    if not known.any():
        raise CalibrationError(
            f"{run / RESULTS_FILE}: no verdict of category {category!r} has a confidence (all fail-safes "
            "or decisions without one), so no threshold changes anything"
        )
    if labels.all() or not labels.any():  # both rates are reported, and one of them would be 0/0
        raise CalibrationError(
            f"{run / RESULTS_FILE}: category {category!r} needs good and defective images; it has "
            f"{np.sum(~labels)} good and {labels.sum()} defective"
        )
    candidates = np.union1d(confidence[known], [1.0])
    rejected = np.where(known, confidence >= candidates[:, None], recorded)
    figures = {
        "escape_rate": np.sum(labels & ~rejected, axis=1) / labels.sum(),
        "false_reject_rate": np.sum(~labels & rejected, axis=1) / np.sum(~labels),
    }
    achieved = figures[target]
    meets = np.flatnonzero(achieved <= rate + 1e-12)
    if not meets.size:
        best = int(np.argmin(achieved))
        raise CalibrationError(
            f"no threshold reaches a {target.replace('_', '-')} of {rate:g} on {labels.size} images of "
            f"{category!r}: the best achievable is {achieved[best]:.4g} at threshold {candidates[best]:.4g}"
            + (" (fail-safes reject at every threshold)" if target == "false_reject_rate" else "")
        )
    chosen = int(meets[-1] if target == "escape_rate" else meets[0])
    return ThresholdChoice(
        threshold=float(candidates[chosen]),
        target=target,
        target_rate=rate,
        escape_rate=float(figures["escape_rate"][chosen]),
        false_reject_rate=float(figures["false_reject_rate"][chosen]),
        good=int((~labels).sum()),
        defective=int(labels.sum()),
        fail_safes=int(np.sum(~known & recorded)),
    )


def _scores(run: Path, category: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image of the category: defective?, confidence (NaN where none), the recorded decision."""
    path = run / RESULTS_FILE
    if not path.is_file():
        raise CalibrationError(f"no {RESULTS_FILE} in {run}: give the folder of an `indus validate` run")
    results, _ = read_results(path)
    chosen = [r for r in results.values() if r.category == category]
    if not chosen:
        present = ", ".join(sorted({r.category for r in results.values()})) or "none"
        raise CalibrationError(f"{path} has no result of category {category!r}; categories: {present}")
    labels = np.array([bool(r.label) for r in chosen])
    confidence = np.array([np.nan if r.verdict.confidence is None else r.verdict.confidence for r in chosen])
    return labels, confidence, np.array([r.rejected for r in chosen])
