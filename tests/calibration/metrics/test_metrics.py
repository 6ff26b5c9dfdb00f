"""Every figure against values worked out by hand on a small set of records."""

import json

import numpy as np
import pytest

from calibration.metrics.bootstrap import intervals
from calibration.metrics.localization import BoxScore, component_boxes, score_box
from calibration.metrics.ranking import auroc, average_precision, average_ranks
from calibration.metrics.summary import flatten, summarize
from calibration.validate.results import Result
from station.verdict import RoundRecord, Timings, ToolCallRecord, Verdict


def record(
    name: str,
    label: int,
    confidence: float | None,
    *,
    category: str = "bottle",
    decision: str | None = None,
    reason: str | None = None,
    answered_type: str | None = None,
    defect: str | None = None,
    gt_boxes: list | None = None,
    localization: BoxScore | None = None,
    tools: tuple[str, ...] = (),
    seconds: float = 1.0,
) -> Result:
    """A result as a run writes it; ``reason`` makes a fail-safe (reject, no confidence)."""
    if decision is None:
        decision = "reject" if reason or confidence >= 0.5 else "accept"
    trace = [
        RoundRecord(
            index=0, text="", kind="tool_calls", tool_calls=[ToolCallRecord(name=t, ok=True) for t in tools]
        )
    ]
    verdict = Verdict(
        decision=decision,
        confidence=None if reason else confidence,
        type=answered_type,
        fail_safe=reason is not None,
        reason=reason,
        threshold=0.5,
        backend="scripted",
        model="hand",
        tool_calls=len(tools),
        timings=Timings(total_s=seconds),
        trace=trace,
    )
    return Result(
        key=f"test:{category}:{name}",
        image=f"/nowhere/{category}/{name}.png",
        category=category,
        label=label,
        defect=defect or ("good" if label == 0 else "broken_thread"),
        mask=None,
        dataset="test",
        gt_boxes=gt_boxes or [],
        localization=localization,
        verdict=verdict,
    )


BOX = [(10, 10, 20, 20)]


@pytest.fixture
def results() -> list[Result]:
    """4 good and 4 defective parts; scores tie across classes at 0.8, 0.4 and 1.0 (the two fail-safes)."""
    return [
        record("g1", 0, 0.1, seconds=1),
        record("g2", 0, 0.4, seconds=2),
        record("g3", 0, 0.8, seconds=3),  # false reject
        record("g4", 0, None, reason="deadline", seconds=4),  # fail-safe on a good part: a false reject
        record(
            "d1",
            1,
            0.9,
            answered_type="Broken-Thread",
            gt_boxes=BOX,
            localization=BoxScore(iou=0.5, hit=True),
            tools=("crop", "enhance"),
            seconds=5,
        ),
        record(
            "d2",
            1,
            0.8,
            answered_type="hole",
            gt_boxes=BOX,
            localization=BoxScore(iou=0.1, hit=False),
            tools=("crop",),
            seconds=6,
        ),
        record("d3", 1, 0.4, gt_boxes=BOX, seconds=7),  # escape, no box
        record("d4", 1, None, reason="parse_error", seconds=8),  # fail-safe on a defect: caught; no mask
    ]


def test_classification_counts_fail_safes_as_rejects(results):
    c = summarize(results)["overall"]["classification"]
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (3, 1, 2, 2)
    assert c["good"] == 4 and c["defective"] == 4
    assert c["accuracy"] == pytest.approx(5 / 8)
    assert c["recall"] == pytest.approx(3 / 4) and c["escape_rate"] == pytest.approx(1 / 4)
    assert c["false_reject_rate"] == pytest.approx(2 / 4)
    assert c["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert c["precision"] == pytest.approx(3 / 5)
    assert c["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))


def test_ranking_with_ties_and_fail_safes_at_one(results):
    ranking = summarize(results)["overall"]["ranking"]
    # Positives 0.9, 0.8, 0.4, 1.0 against negatives 0.1, 0.4, 0.8, 1.0 (fail-safes score 1.0).
    # Pairs won: 0.9 -> 3; 0.8 -> 2 + tie; 0.4 -> 1 + tie; 1.0 -> 3 + tie.  (9 + 3 * 0.5) / 16
    assert ranking["auroc"] == pytest.approx(10.5 / 16)
    # Thresholds from the top: 1.0 {d4, g4} P 1/2 R 1/4; 0.9 {d1} P 2/3 R 2/4; 0.8 {d2, g3} P 3/5 R 3/4;
    # 0.4 {d3, g2} P 4/7 R 1; 0.1 {g1} adds no recall.
    assert ranking["ap"] == pytest.approx(0.25 * (1 / 2 + 2 / 3 + 3 / 5 + 4 / 7))


def test_localization_type_tools_latency_and_fail_safes(results):
    overall = summarize(results)["overall"]
    # d1, d2, d3 have masks (d4 has none); d1 and d2 answered boxes.
    assert overall["localization"] == {"masked": 3, "boxed": 2, "iou": pytest.approx(0.3), "hit_rate": 0.5}
    # Flagged by the model itself: d1 (right, despite case and separator) and d2 (wrong); d4 is a fail-safe.
    assert overall["defect_type"] == {"flagged": 2, "correct": 1, "accuracy": 0.5}
    assert overall["tools"] == {"calls": 3, "per_image": 3 / 8, "by_name": {"crop": 2 / 8, "enhance": 1 / 8}}
    assert overall["latency"] == {"mean_s": 4.5, "p50_s": 4.5, "p99_s": pytest.approx(1 + 0.99 * 7)}
    assert overall["fail_safes"] == {"count": 2, "rate": 0.25, "by_reason": {"deadline": 1, "parse_error": 1}}


def test_per_category_and_mean_over_categories():
    results = [
        record("a_g", 0, 0.1, category="a"),
        record("a_d1", 1, 0.9, category="a"),
        record("a_d2", 1, 0.2, category="a"),  # a: recall 1/2, FRR 0 -> bal. acc. 3/4
        record("b_g1", 0, 0.7, category="b"),
        record("b_g2", 0, 0.3, category="b"),  # b: only good parts: FRR 1/2, nothing defined about defects
    ]
    summary = summarize(results)
    a, b = summary["categories"]["a"], summary["categories"]["b"]
    assert a["classification"]["balanced_accuracy"] == pytest.approx(0.75)
    assert b["classification"]["false_reject_rate"] == 0.5
    for undefined in ("balanced_accuracy", "recall", "escape_rate"):
        assert b["classification"][undefined] is None
    assert b["classification"]["precision"] == 0  # its one reject was a good part: defined, and bad
    assert b["ranking"] == {"auroc": None, "ap": None}
    assert b["intervals"] == {"balanced_accuracy": None, "recall": None, "auroc": None}
    mean = summary["category_mean"]
    assert mean["classification"]["false_reject_rate"] == pytest.approx((0 + 0.5) / 2)
    # Undefined in b: the mean is a's value, not a's value halved.
    assert mean["classification"]["balanced_accuracy"] == pytest.approx(0.75)
    assert mean["ranking"]["auroc"] == a["ranking"]["auroc"] == 1.0
    assert "images" not in mean and "tp" not in mean["classification"] and "intervals" not in mean
    # Pooled, not averaged: 1 of 2 defects caught, 1 of 3 good parts rejected.
    pooled = summary["overall"]["classification"]
    assert pooled["recall"] == 0.5 and pooled["false_reject_rate"] == pytest.approx(1 / 3)
    json.dumps(summary, allow_nan=False)  # None, never NaN


def test_edge_cases_do_not_crash():
    all_fail_safes = [record(f"x{i}", i % 2, None, reason="backend_error") for i in range(4)]
    overall = summarize(all_fail_safes)["overall"]
    assert overall["classification"]["recall"] == 1 and overall["classification"]["false_reject_rate"] == 1
    assert overall["ranking"]["auroc"] == 0.5  # every score 1.0: all ties
    assert overall["fail_safes"]["count"] == 4 and overall["defect_type"]["accuracy"] is None
    assert overall["localization"] == {"masked": 0, "boxed": 0, "iou": None, "hit_rate": None}
    empty = summarize([])
    assert empty["overall"]["images"] == 0 and empty["categories"] == {}
    assert empty["overall"]["latency"]["p50_s"] is None
    json.dumps(empty, allow_nan=False)


def test_box_scores_against_a_hand_drawn_mask():
    mask = np.zeros((100, 200), dtype=bool)  # h 100, w 200: one 0-1000 unit is 0.2 px across, 0.1 px down
    mask[10:30, 20:40] = True  # a square, pixels [20, 10, 40, 30)
    mask[50:90, 100:110] = True  # an L: a bar down ...
    mask[80:90, 110:160] = True  # ... and a foot to the right; its box is [100, 50, 160, 90)
    gt = component_boxes(mask)
    assert gt == [(20, 10, 40, 30), (100, 50, 160, 90)]
    exact = score_box([100, 100, 200, 300], mask, gt)  # -> pixels [20, 10, 40, 30)
    assert exact == BoxScore(iou=1.0, hit=True)
    shifted = score_box([150, 200, 250, 400], mask, gt)  # -> [30, 20, 50, 40): 10 x 10 overlap
    assert shifted.iou == pytest.approx(100 / (400 + 400 - 100)) and shifted.hit
    inside_the_bend = score_box([600, 550, 750, 750], mask, gt)  # [120, 55, 150, 75): no defect pixel
    assert inside_the_bend.iou == pytest.approx(30 * 20 / (60 * 40)) and not inside_the_bend.hit


def test_ranking_functions_match_definitions():
    labels = np.array([1, 0, 1, 0, 1], dtype=bool)
    scores = np.array([0.9, 0.9, 0.5, 0.1, 0.1])
    # Pairs: 0.9 vs {0.9 tie, 0.1} = 1.5; 0.5 vs {0.9, 0.1} = 1; 0.1 vs {0.9, 0.1 tie} = 0.5.  3 / 6
    assert auroc(labels, scores) == pytest.approx(3 / 6)
    # 0.9: P 1/2 R 1/3; 0.5: P 2/3 R 2/3; 0.1: P 3/5 R 1.
    assert average_precision(labels, scores) == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert np.isnan(auroc(labels[[1, 3]], scores[[1, 3]])) and np.isnan(average_precision(labels[[1]], [0.3]))
    ranks = average_ranks(np.array([[3.0, 1, 3, 2], [5, 5, 5, 5]]))
    np.testing.assert_array_equal(ranks, [[3.5, 1, 3.5, 2], [2.5, 2.5, 2.5, 2.5]])
    batch = np.stack([scores, scores[::-1]])
    np.testing.assert_allclose(auroc(np.stack([labels, labels]), batch), [auroc(labels, s) for s in batch])


def test_bootstrap_intervals_are_seeded_and_bracket_the_figure(results):
    labels = np.array([r.label for r in results], dtype=bool)
    rejected = np.array([r.rejected for r in results])
    scores = np.array([r.score for r in results])
    first = intervals(labels, rejected, scores)
    assert first == intervals(labels, rejected, scores)  # same seed, same interval
    assert first != intervals(labels, rejected, scores, seed=1)
    assert first["balanced_accuracy"]["low"] <= 0.625 <= first["balanced_accuracy"]["high"]
    assert first["auroc"]["low"] <= 10.5 / 16 <= first["auroc"]["high"]
    perfect = intervals(labels, labels, labels.astype(float))
    assert perfect == {name: {"low": 1.0, "high": 1.0} for name in ("balanced_accuracy", "recall", "auroc")}


def test_flatten_gives_dotted_columns(results):
    flat = flatten(summarize(results)["overall"])
    assert flat["classification.recall"] == 0.75 and flat["fail_safes.by_reason.deadline"] == 1
    assert "intervals.auroc.low" in flat
