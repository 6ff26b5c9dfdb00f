"""95% intervals for the headline figures: a seeded, stratified percentile bootstrap over images.

Images are resampled with replacement within each class (good and defective separately, each keeping its
count), so every resample has both classes and balanced accuracy and AUROC stay defined; the interval then
reflects the sampling of parts, not the luck of drawing a resample without defects. The same seed gives the
same intervals, so two runs' reports agree on the same results. All resamples are evaluated at once by the
same vectorised functions that give the point figures.
"""

from __future__ import annotations

import numpy as np

from calibration.metrics.base import finite_or_none
from calibration.metrics.classification import rates
from calibration.metrics.ranking import auroc

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
FIGURES = ("balanced_accuracy", "recall", "auroc")


def intervals(
    labels: np.ndarray,
    rejected: np.ndarray,
    scores: np.ndarray,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, dict[str, float | None] | None]:
    """``{figure: {"low", "high"}}`` for balanced accuracy, recall and AUROC; None where a figure is
    undefined for these images (no defective image, or no good one for balanced accuracy and AUROC)."""
    labels = np.asarray(labels, dtype=bool)
    defective, good = np.flatnonzero(labels), np.flatnonzero(~labels)
    if defective.size == 0:
        return dict.fromkeys(FIGURES)
    rng = np.random.default_rng(seed)
    index = np.concatenate(
        [rng.choice(part, size=(resamples, part.size)) for part in (defective, good) if part.size],
        axis=1,
    )
    sampled_labels = labels[index]
    figures = rates(sampled_labels, np.asarray(rejected, dtype=bool)[index])
    figures["auroc"] = auroc(sampled_labels, np.asarray(scores, dtype=float)[index])
    tail = (1 - level) / 2 * 100
    out: dict[str, dict[str, float | None] | None] = {}
    for name in FIGURES:
        values = figures[name]
        if np.isnan(values).all():
            out[name] = None
            continue
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        out[name] = {"low": finite_or_none(low), "high": finite_or_none(high)}
    return out
