"""Two finished runs side by side: before and after training, torch against GGUF, one threshold against
another.

Figures come from each run's ``metrics.json``; the paired counts come from both ``results.jsonl`` files,
matched by sample key, so "fixed" and "broken" images are counted on exactly the images both runs saw.
Comparing writes nothing unless asked (``--out``), so it can be run on someone else's read-only results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from calibration.metrics.summary import HEADLINE, format_value, lookup
from calibration.validate.results import RESULTS_FILE, read_results
from calibration.validate.runner import METRICS_FILE, spec_changes

# Figures where a drop is an improvement; the rest improve upwards, except counts of images and tools.
LOWER_IS_BETTER = frozenset(
    {
        "classification.escape_rate",
        "classification.false_reject_rate",
        "fail_safes.count",
        "latency.mean_s",
        "latency.p50_s",
        "latency.p99_s",
    }
)
NEUTRAL = frozenset({"images", "tools.per_image"})


class CompareError(ValueError):
    """A folder that is not a finished validation run."""


def compare_runs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """``{"a", "b", "spec_changes", "figures": {scope: {figure: {"a", "b", "delta"}}}, "paired"}``."""
    (metrics_a, results_a), (metrics_b, results_b) = (_load(Path(folder)) for folder in (a, b))
    scopes = {"overall": ("overall",), "category_mean": ("category_mean",)}
    scopes |= {
        name: ("categories", name) for name in metrics_a["categories"] if name in metrics_b["categories"]
    }
    figures = {}
    for scope, path in scopes.items():
        scope_a, scope_b = _at(metrics_a, path), _at(metrics_b, path)
        figures[scope] = {key: _pair(lookup(scope_a, key), lookup(scope_b, key)) for key, _ in HEADLINE}
    common = results_a.keys() & results_b.keys()
    correct = [(results_a[k].correct, results_b[k].correct) for k in common]
    runs_info = {
        side: {"path": str(folder), "fingerprint": m["run"]["fingerprint"], "spec": m["run"]["spec"]}
        for side, folder, m in (("a", a, metrics_a), ("b", b, metrics_b))
    }
    return {
        **runs_info,
        "spec_changes": {
            key: {"a": before, "b": after}
            for key, (before, after) in spec_changes(
                metrics_a["run"]["spec"], metrics_b["run"]["spec"]
            ).items()
        },
        "figures": figures,
        "paired": {
            "common": len(common),
            "only_a": len(results_a.keys() - common),
            "only_b": len(results_b.keys() - common),
            "both_correct": correct.count((True, True)),
            "fixed": correct.count((False, True)),  # wrong in A, right in B
            "broken": correct.count((True, False)),  # right in A, wrong in B
            "both_wrong": correct.count((False, False)),
        },
    }


def _load(folder: Path) -> tuple[dict[str, Any], dict]:
    metrics_file = folder / METRICS_FILE
    if not metrics_file.is_file():
        raise CompareError(
            f"{folder} has no {METRICS_FILE}: not a finished validation run "
            "(run `indus validate` into it first)"
        )
    results, _ = read_results(folder / RESULTS_FILE)
    return json.loads(metrics_file.read_text(encoding="utf-8")), results


def _at(tree: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for part in path:
        tree = tree[part]
    return tree


def _pair(a: Any, b: Any) -> dict[str, Any]:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return {"a": a, "b": b, "delta": b - a if numbers else None}


def print_comparison(comparison: dict[str, Any], console: Console) -> None:
    a, b = comparison["a"], comparison["b"]
    console.print(f"A: {a['path']} ({a['spec']['model']}, run {a['fingerprint']})")
    console.print(f"B: {b['path']} ({b['spec']['model']}, run {b['fingerprint']})")
    for key, change in comparison["spec_changes"].items():
        console.print(f"  [dim]{key}: {json.dumps(change['a'])} -> {json.dumps(change['b'])}[/]")
    figures = comparison["figures"]
    table = Table(title="overall (pooled) and mean over categories")
    table.add_column("figure")
    for scope in ("overall", "mean"):
        for column in ("A", "B", "B-A"):
            table.add_column(f"{scope} {column}", justify="right")
    for key, label in HEADLINE:
        cells = []
        for scope in ("overall", "category_mean"):
            pair = figures[scope][key]
            cells += [format_value(pair["a"]), format_value(pair["b"]), _delta(key, pair["delta"])]
        table.add_row(label, *cells)
    console.print(table)
    categories = [name for name in figures if name not in ("overall", "category_mean")]
    if categories:
        per_category = Table(title="per category")
        per_category.add_column("category")
        shown = ("classification.balanced_accuracy", "classification.recall", "ranking.auroc")
        for key in shown:
            label = dict(HEADLINE)[key]
            for column in ("A", "B", "B-A"):
                per_category.add_column(f"{label} {column}", justify="right")
        for name in categories:
            cells = []
            for key in shown:
                pair = figures[name][key]
                cells += [format_value(pair["a"]), format_value(pair["b"]), _delta(key, pair["delta"])]
            per_category.add_row(name, *cells)
        console.print(per_category)
    paired = comparison["paired"]
    console.print(
        f"on the {paired['common']} images both runs inspected: {paired['fixed']} fixed "
        f"(wrong in A, right in B), {paired['broken']} broken (right in A, wrong in B), "
        f"{paired['both_wrong']} wrong in both"
        + (
            f"; {paired['only_a']} only in A, {paired['only_b']} only in B"
            if paired["only_a"] or paired["only_b"]
            else ""
        )
    )


def _delta(key: str, delta: float | None) -> str:
    if delta is None:
        return "-"
    text = f"{delta:+.3f}" if isinstance(delta, float) else f"{delta:+d}"
    if key in NEUTRAL or delta == 0:
        return text
    better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
    return f"[{'green' if better else 'red'}]{text}[/]"
