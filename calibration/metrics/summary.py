"""All figures of a run, per category, pooled over every image, and as the mean over categories.

``overall`` pools every image (a category with more images weighs more); ``category_mean`` is the
unweighted mean of each per-category rate, the number benchmark papers report per dataset. Counts are not
averaged (ints are counts, floats are rates, by construction of the metrics) and neither are intervals;
a category where a rate is undefined (AUROC with only good images) drops out of that rate's mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.metrics.base import Metric
from calibration.metrics.bootstrap import RESAMPLES, SEED, intervals
from calibration.metrics.classification import Classification
from calibration.metrics.defect_type import DefectType
from calibration.metrics.localization import Localization
from calibration.metrics.operations import FailSafes, Latency, ToolUsage
from calibration.metrics.ranking import Ranking

if TYPE_CHECKING:
    from calibration.validate.results import Result

# The figures tables show, as dotted paths into a scope, with their column titles; the report, the terminal
# and `--compare` all read these lists. Detection first, then where and what, and what it cost.
DETECTION: tuple[tuple[str, str], ...] = (
    ("images", "images"),
    ("classification.balanced_accuracy", "bal. acc."),
    ("classification.accuracy", "acc."),
    ("classification.precision", "precision"),
    ("classification.recall", "recall"),
    ("classification.escape_rate", "escape"),
    ("classification.false_reject_rate", "false rej."),
    ("classification.f1", "F1"),
    ("ranking.auroc", "AUROC"),
    ("ranking.ap", "AP"),
)
OPERATION: tuple[tuple[str, str], ...] = (
    ("localization.iou", "IoU"),
    ("localization.hit_rate", "hit"),
    ("defect_type.accuracy", "type acc."),
    ("fail_safes.count", "fail-safes"),
    ("tools.per_image", "tools/img"),
    ("latency.mean_s", "mean s"),
    ("latency.p50_s", "p50 s"),
    ("latency.p99_s", "p99 s"),
)
HEADLINE = DETECTION + OPERATION


def summarize(results: Sequence[Result], *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """``{"overall": scope, "category_mean": scope, "categories": {name: scope}}``, categories in the order
    they first appear."""
    tool_names = {call.name for r in results for rnd in r.verdict.trace for call in rnd.tool_calls}
    by_category: dict[str, list[Result]] = {}
    for result in results:
        by_category.setdefault(result.category, []).append(result)
    categories = {
        name: scope(members, tool_names=tool_names, resamples=resamples, seed=seed)
        for name, members in by_category.items()
    }
    overall = scope(results, tool_names=tool_names, resamples=resamples, seed=seed)
    # Without categories the mean keeps its shape, every rate undefined (the empty overall's rates are None).
    averaged = list(categories.values()) or [overall]
    return {
        "overall": overall,
        "category_mean": _mean([{k: v for k, v in c.items() if k != "intervals"} for c in averaged]),
        "categories": categories,
    }


def scope(
    results: Sequence[Result], *, tool_names: Iterable[str] = (), resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, Any]:
    """Every figure over one set of results."""
    classification, ranking = Classification(), Ranking()
    metrics: dict[str, Metric] = {
        "classification": classification,
        "ranking": ranking,
        "localization": Localization(),
        "defect_type": DefectType(),
        "fail_safes": FailSafes(),
        "tools": ToolUsage(tool_names),
        "latency": Latency(),
    }
    for result in results:
        for metric in metrics.values():
            metric.update(result)
    labels, scores = ranking.arrays()
    rejected = np.array(classification.rejected, dtype=bool)
    return (
        {"images": len(results)}
        | {name: metric.compute() for name, metric in metrics.items()}
        | {"intervals": intervals(labels, rejected, scores, resamples=resamples, seed=seed)}
    )


def _mean(scopes: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the float leaves over scopes (None where no scope defines it); int leaves are counts."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for s in scopes for k in s):
        values = [s[key] for s in scopes if key in s]
        if all(isinstance(v, dict) for v in values):
            out[key] = _mean(values)
        elif not any(isinstance(v, int) for v in values):  # bool is an int too
            defined = [v for v in values if v is not None]
            out[key] = sum(defined) / len(defined) if defined else None
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as ``{"a.b.c": value}``, for CSV columns and side-by-side tables."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{path}.")
        else:
            flat[path] = value
    return flat


def lookup(tree: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None where any part is missing (a null interval, say)."""
    for part in path.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)  # type: ignore[assignment]
    return tree


def format_value(value: Any) -> str:
    """Figures as tables show them: rates to three places, counts as counts, undefined as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def cell(tree: dict[str, Any], path: str) -> tuple[str, str]:
    """A figure as a table shows it, and its interval (or an empty string)."""
    return format_value(lookup(tree, path)), interval_text(tree, path)


def interval(tree: dict[str, Any], path: str) -> dict[str, float | None] | None:
    """The figure's 95% interval ``{"low", "high"}`` where the scope has one. Intervals are keyed by the
    figure's last name (balanced_accuracy, recall, auroc)."""
    found = lookup(tree, f"intervals.{path.rpartition('.')[2]}")
    return found if isinstance(found, dict) else None


def interval_text(tree: dict[str, Any], path: str) -> str:
    """``[0.750, 1.000]``, or an empty string for a figure without an interval."""
    found = interval(tree, path)
    return "" if found is None else f"[{format_value(found['low'])}, {format_value(found['high'])}]"
