"""``report.html``: one self-contained page per run, to read on the station's own screen or mail around.

Everything is inline (figures as base64 PNG, thumbnails as base64 JPEG, CSS in a style element, no
scripts, no network), so the file opens anywhere, including air-gapped line PCs. Every string that came from
the model or the dataset is escaped by the template engine, never pasted in by hand.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from jinja2 import Environment

from calibration.datasets import DatasetError
from calibration.metrics.ranking import pr_curve, roc_curve
from calibration.metrics.summary import DETECTION, OPERATION, cell, format_value, interval, lookup
from calibration.validate.results import Result
from tools.boxes import rel_to_px
from tools.image import ImageError, fit_pixels, to_rgb

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The pooled ROC and PR curves; no other element of the page uses it, so it can be found in a screenshot.
OVERALL_COLOUR = "#e6007e"
# Category curves: tab10 without its red and pink, which read as the overall curve at a glance.
CATEGORY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#bcbd22", "#17becf")
GALLERY_LIMIT = 24
THUMBNAIL_PIXELS = 360 * 360
THUMBNAIL_SIDE = 240  # small images are enlarged so the outlines stay visible
OBSERVATION_CHARS = 600
MASK_RGB = (0, 200, 0)
ANSWER_RGB = (255, 120, 0)


def write_report(path: Path, metrics: dict[str, Any], results: Sequence[Result]) -> None:
    path.write_text(render_report(metrics, results), encoding="utf-8")


def render_report(metrics: dict[str, Any], results: Sequence[Result]) -> str:
    pooled = [("overall", metrics["overall"]), ("mean over categories", metrics["category_mean"])]
    categories = list(metrics["categories"].items())
    scopes = pooled + categories
    escapes = sorted((r for r in results if r.label == 1 and not r.rejected), key=lambda r: r.score)
    false_rejects = sorted((r for r in results if r.label == 0 and r.rejected), key=lambda r: -r.score)
    shown = [*escapes, *false_rejects][:GALLERY_LIMIT]
    run = metrics["run"]
    return _TEMPLATE.render(
        run=run,
        spec_json=json.dumps(run["spec"], indent=2),
        tables=[
            (
                [label for _, label in columns],
                [(name, [cell(scope, key) for key, _ in columns]) for name, scope in scopes],
            )
            for columns in (DETECTION, OPERATION)
        ],
        figures=_figures(metrics, results),
        fail_safes=[(name, scope["fail_safes"]) for name, scope in [pooled[0], *categories]],
        tool_names=list(metrics["overall"]["tools"]["by_name"]),
        tool_rows=[(name, scope["tools"]) for name, scope in scopes],
        escapes=len(escapes),
        false_rejects=len(false_rejects),
        cards=[_card(r) for r in shown],
        format_value=format_value,
    )


# -- figures -----------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # here: importing matplotlib takes a second that `--compare` skips

    return Figure(figsize=(width, height))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figures(metrics: dict[str, Any], results: Sequence[Result]) -> dict[str, str]:
    return {
        "curves": _png(_curves(results)),
        "confusion": _png(_confusion(metrics["overall"]["classification"])),
        "categories": _png(_categories(metrics["categories"])),
        "latency": _png(_latency(results, metrics["overall"]["latency"])),
        "tools": _png(_tools(results, metrics["overall"]["tools"])),
    }


def _curves(results: Sequence[Result]) -> Figure:
    fig = _figure(8.6, 3.8)
    roc, pr = fig.subplots(1, 2)
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.category, []).append(result)
    series = [(f"overall ({len(results)})", results, OVERALL_COLOUR, 2.6)]
    series += [
        (name, members, CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)], 1.1)
        for i, (name, members) in enumerate(groups.items())
    ]
    if len(groups) == 1:  # the category is the overall curve
        series = series[:1]
    for name, members, colour, width in series:
        labels = np.array([r.label for r in members], dtype=bool)
        scores = np.array([r.score for r in members], dtype=float)
        if labels.all() or not labels.any():
            continue  # one class only: no curve
        fpr, tpr = roc_curve(labels, scores)
        recall, precision = pr_curve(labels, scores)
        roc.plot(fpr, tpr, color=colour, lw=width, label=name)
        pr.step(
            np.r_[0.0, recall],
            np.r_[precision[0], precision],
            where="pre",
            color=colour,
            lw=width,
            label=name,
        )
    roc.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1)
    for ax, (title, xlabel, ylabel) in zip(
        (roc, pr),
        (
            ("ROC", "false-reject rate (good parts rejected)", "recall (defects caught)"),
            ("precision-recall", "recall", "precision"),
        ),
        strict=True,
    ):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a curve was drawn
            ax.legend(loc="lower right" if ax is roc else "lower left", fontsize=8)
        else:
            ax.text(
                0.5, 0.5, "undefined: needs good and defective images", ha="center", transform=ax.transAxes
            )
    return fig


def _confusion(classification: dict[str, Any]) -> Figure:
    fig = _figure(3.6, 3.4)
    ax = fig.subplots()
    cells = np.array(
        [[classification["tn"], classification["fp"]], [classification["fn"], classification["tp"]]]
    )
    ax.imshow(cells, cmap="Blues", vmin=0, vmax=max(1, cells.max()))
    names = [["true accept", "false reject"], ["escape", "true reject"]]
    for (row, col), count in np.ndenumerate(cells):
        dark = count > cells.max() / 2
        ax.text(
            col,
            row,
            f"{count}\n{names[row][col]}",
            ha="center",
            va="center",
            color="white" if dark else "black",
        )
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="station decision",
        ylabel="ground truth",
        title="confusion (all images)",
    )
    ax.set_xticklabels(["accept", "reject"])
    ax.set_yticklabels(["good", "defective"])
    return fig


def _categories(categories: dict[str, dict[str, Any]]) -> Figure:
    names = list(categories)
    fig = _figure(max(6.0, 0.9 * len(names) + 2), 4)
    ax = fig.subplots()
    x = np.arange(len(names))
    for offset, (path, label, colour) in zip(
        (-0.2, 0.2),
        (
            ("classification.balanced_accuracy", "balanced accuracy", "#1f77b4"),
            ("ranking.auroc", "AUROC", "#ff7f0e"),
        ),
        strict=True,
    ):
        values = np.array([_or_nan(lookup(categories[n], path)) for n in names])
        bounds = [interval(categories[n], path) or {} for n in names]
        low = np.array([_or_nan(b.get("low")) for b in bounds])
        high = np.array([_or_nan(b.get("high")) for b in bounds])
        errors = np.nan_to_num(np.vstack([values - low, high - values]), nan=0.0).clip(min=0)
        ax.bar(x + offset, np.nan_to_num(values), 0.4, yerr=errors, capsize=3, color=colour, label=label)
    ax.axhline(0.5, ls=":", color="#999999", lw=1)
    ax.set_xticks(x)
    ax.set_xticklabels(
        names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center"
    )
    ax.set(ylim=(0, 1.18), title="per category (95% intervals; missing bar = undefined)")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    return fig


def _latency(results: Sequence[Result], latency: dict[str, Any]) -> Figure:
    fig = _figure(5, 3.6)
    ax = fig.subplots()
    ax.hist(
        [r.verdict.timings.total_s for r in results], bins=min(40, max(5, len(results) // 4)), color="#9467bd"
    )
    for name, style in (("p50_s", "--"), ("p99_s", ":")):
        if latency[name] is not None:
            ax.axvline(latency[name], color="#333333", ls=style, label=f"{name[:3]} {latency[name]:.3g} s")
    ax.set(title="latency per image", xlabel="seconds (image to verdict)", ylabel="images")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _tools(results: Sequence[Result], tools: dict[str, Any]) -> Figure:
    fig = _figure(8, 3.6)
    by_name, per_image = fig.subplots(1, 2)
    names = list(tools["by_name"])
    by_name.barh(names, [tools["by_name"][n] for n in names], color="#17becf")
    by_name.set(title="calls per image, by tool", xlabel="calls per image")
    if not names:
        by_name.text(0.5, 0.5, "no tool calls", ha="center", transform=by_name.transAxes)
    counts = [r.verdict.tool_calls for r in results]
    values = np.arange(max(counts, default=0) + 1)
    per_image.hist(counts, bins=np.r_[values, values[-1] + 1] - 0.5, color="#8c564b", rwidth=0.8)
    per_image.set_xticks(values)
    per_image.set(title="tool calls per image", xlabel="calls", ylabel="images")
    return fig


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


# -- gallery -----------------------------------------------------------------------------------------------


def _card(result: Result) -> dict[str, Any]:
    verdict = result.verdict
    return {
        "thumbnail": _thumbnail(result),
        "result": result,
        "verdict": verdict,
        "kind": "escape" if result.label == 1 else "false reject",
        "confidence": "-"
        if verdict.confidence is None
        else f"{verdict.confidence:.3f} ({verdict.confidence_source})",
        "rounds": [
            {
                "round": rnd,
                "calls": [
                    {
                        "call": call,
                        "arguments": json.dumps(call.arguments),
                        "observation": _clip(call.observation),
                    }
                    for call in rnd.tool_calls
                ],
            }
            for rnd in verdict.trace
        ],
    }


def _clip(text: str) -> str:
    return text if len(text) <= OBSERVATION_CHARS else text[:OBSERVATION_CHARS] + f" ... ({len(text)} chars)"


def _thumbnail(result: Result) -> str | None:
    """The image with the ground-truth outline (green) and the answered box (orange), or None when the
    image is no longer where the run read it."""
    sample = result.sample()
    try:
        image = to_rgb(sample.load_image())
    except (ImageError, OSError):  # moved, deleted or unreadable: the card still shows the verdict and trace
        return None
    height, width = image.shape[:2]
    thumb = np.ascontiguousarray(fit_pixels(image, THUMBNAIL_PIXELS, min_side=THUMBNAIL_SIDE))
    scale = thumb.shape[1] / width
    try:
        mask = sample.load_mask()
    except DatasetError:  # drawn from the stored component boxes instead
        mask = None
    if mask is not None:
        small = cv2.resize(
            mask.astype(np.uint8), (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(thumb, contours, -1, MASK_RGB, 1)
    else:
        for x1, y1, x2, y2 in result.gt_boxes:
            cv2.rectangle(thumb, _scaled((x1, y1), scale), _scaled((x2 - 1, y2 - 1), scale), MASK_RGB, 1)
    if result.verdict.bbox is not None:
        x1, y1, x2, y2 = rel_to_px(result.verdict.bbox, width, height)
        cv2.rectangle(thumb, _scaled((x1, y1), scale), _scaled((x2 - 1, y2 - 1), scale), ANSWER_RGB, 2)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode() if ok else None


def _scaled(point: tuple[int, int], scale: float) -> tuple[int, int]:
    return round(point[0] * scale), round(point[1] * scale)


_TEMPLATE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>indus validate: {{ run.spec.model }} on {{ run.spec.dataset }}</title>
<style>
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1240px; color: #1d1d1f; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #555; } code, pre { font: 12px/1.35 ui-monospace, Menlo, Consolas, monospace; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f5f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.pooled td { font-weight: 600; } .wide { overflow-x: auto; }
.figs { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; } .figs img { max-width: 100%; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; background: #fafafa; overflow: hidden; }
.card img { max-width: 100%; display: block; margin-bottom: 6px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; color: white; font-size: 12px; }
.escape { background: #b3261e; } .false-reject { background: #7a5c00; }
pre { white-space: pre-wrap; word-break: break-word; background: white; border: 1px solid #eee; padding: 4px;
      max-height: 220px; overflow: auto; margin: 4px 0; }
.round { margin-top: 6px; } .err { color: #b3261e; } .dim { color: #666; }
</style>
</head>
<body>
<h1>Re-validation report</h1>
<div class="meta">{{ run.spec.model }} ({{ run.spec.backend }}) on <code>{{ run.spec.dataset }}</code>
 &middot; run {{ run.fingerprint }} &middot; started {{ run.created }}
 &middot; indus-station {{ run.indus_station }}</div>

<h2>Headline</h2>
{% for headline, rows in tables %}
<div class="wide"><table>
<tr><th>scope</th>{% for label in headline %}<th>{{ label }}</th>{% endfor %}</tr>
{% for name, cells in rows %}
<tr{% if loop.index <= 2 %} class="pooled"{% endif %}><td>{{ name }}</td>
{% for value, interval in cells %}
<td class="num">{{ value }}{% if interval %}<br><small class="dim">{{ interval }}</small>{% endif %}</td>
{% endfor %}</tr>
{% endfor %}
</table></div>
{% endfor %}
<p class="dim">Brackets: 95% stratified bootstrap interval. Positive = defective. Fail-safes count as rejects
(the line rejects them) and score 1.0 for AUROC/AP; they are counted on their own below.</p>

<h2>Curves and confusion</h2>
<div class="figs"><img alt="ROC and precision-recall curves" src="{{ figures.curves }}">
<img alt="confusion matrix" src="{{ figures.confusion }}"></div>

<h2>Per category</h2>
<div class="figs"><img alt="per-category balanced accuracy and AUROC" src="{{ figures.categories }}"></div>

<h2>Latency and tools</h2>
<div class="figs"><img alt="latency histogram" src="{{ figures.latency }}">
<img alt="tool usage" src="{{ figures.tools }}"></div>
<table>
<tr><th>scope</th><th>calls/image</th>{% for name in tool_names %}<th>{{ name }}</th>{% endfor %}</tr>
{% for name, tools in tool_rows %}
<tr><td>{{ name }}</td><td class="num">{{ format_value(tools.per_image) }}</td>
{% for tool in tool_names %}<td class="num">{{ format_value(tools.by_name.get(tool)) }}</td>{% endfor %}</tr>
{% endfor %}
</table>

<h2>Fail-safes</h2>
<table>
<tr><th>scope</th><th>count</th><th>rate</th><th>by reason</th></tr>
{% for name, fs in fail_safes %}
<tr><td>{{ name }}</td><td class="num">{{ fs.count }}</td><td class="num">{{ format_value(fs.rate) }}</td>
<td>{% for reason, count in fs.by_reason.items() %}{{ reason }}: {{ count }}{{ ", " if not loop.last }}
{% endfor %}</td></tr>
{% endfor %}
</table>

<h2>Failures</h2>
<p>{{ escapes }} escape(s) (defective parts accepted) and {{ false_rejects }} false reject(s) (good parts
rejected){% if escapes + false_rejects > cards|length %}; the first {{ cards|length }} are shown{% endif %}:
escapes first, each group most confident first. Green: ground-truth outline; orange: the answered box.</p>
<div class="cards">
{% for c in cards %}
<div class="card">
{% if c.thumbnail %}
<img alt="{{ c.result.image }}" src="{{ c.thumbnail }}">
{% else %}
<p class="dim">image not available: {{ c.result.image }}</p>
{% endif %}
<div><span class="tag {{ c.kind|replace(' ', '-') }}">{{ c.kind }}</span>
<b>{{ c.result.category }}</b> / {{ c.result.defect }}</div>
<div class="dim"><code>{{ c.result.image }}</code></div>
<div>decision <b>{{ c.verdict.decision }}</b> &middot; confidence {{ c.confidence }}
 &middot; type {{ c.verdict.type or "-" }} &middot; {{ c.verdict.tool_calls }} tool call(s)
 &middot; {{ "%.2f"|format(c.verdict.timings.total_s) }} s</div>
{% if c.verdict.fail_safe %}
<div class="err">fail-safe: {{ c.verdict.reason }}: {{ c.verdict.detail }}</div>
{% endif %}
{% for r in c.rounds %}
<div class="round"><b>round {{ r.round.index + 1 }}</b>
<span class="dim">{{ r.round.kind }} &middot; model {{ "%.2f"|format(r.round.model_s) }} s</span>
<pre>{{ r.round.text }}</pre>
{% for t in r.calls %}
<div>&rarr; <code>{{ t.call.name }} {{ t.arguments }}</code>
{% if not t.call.ok %}<span class="err">error</span>{% endif %}</div>
<pre>{{ t.observation }}</pre>
{% endfor %}
</div>
{% endfor %}
</div>
{% endfor %}
</div>

<h2>Definitions</h2>
<ul>
<li>Balanced accuracy (MMAD / IAD-R1 protocol): mean of the accuracy on good images and on defective images;
undefined without both. Escape rate = 1 - recall; false-reject rate = good images rejected / good images.</li>
<li>AUROC and AP rank images by the verdict confidence (probability of a defect); a verdict without one
scores as its decision. Ties count one half.</li>
<li>Localization: over defective images with defect pixels in their mask and an answered box. IoU is the best
IoU of the answered box with the bounding boxes of the mask's connected components; a hit means the box
contains at least one defect pixel.</li>
<li>Type accuracy: answered type equals the dataset's defect name (ignoring case, spaces, hyphens and
underscores), over defective images the model itself rejected.</li>
<li>Overall pools all images; the mean over categories averages each category's rate, skipping categories
where it is undefined.</li>
</ul>
<details><summary>run specification</summary><pre>{{ spec_json }}</pre></details>
</body>
</html>
"""
)
