"""The model teacher: a scripted model in the station's agent loop writes, and curation keeps, retries,
judges or drops its trajectories."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from calibration.datasets import open_dataset
from calibration.datasets.base import Sample
from calibration.metrics.localization import component_boxes
from calibration.synth import write_dataset
from station.agent_config import AgentConfig
from station.backends.scripted import ANSWER_GOOD, FAULTS, ScriptedBackend, ScriptedTurn
from station.protocol import Answer, ToolCall, ToolCalls, parse_turn, render_chat, user_text
from station.protocol.turns import think_block
from tools.boxes import px_to_rel
from tools.registry import Observation, ToolContext
from tools.toolkit import default_registry
from train.cli import train
from train.cot import (
    Judge,
    ModelTeacher,
    TeacherRejected,
    TeacherUnavailable,
    build_trajectories,
    check_trajectory,
    defect_box,
    load_trajectories,
)
from train.cot.dataset import CURATION_FILE, TRAJECTORIES_FILE
from train.cot.model_teacher import JUDGE_PROMPT, parse_score

CONFIG = AgentConfig(deadline_s=30.0)
CROP_ANY = ToolCalls(
    (ToolCall("crop", {}),), content=think_block("A closer look at the most salient region.")
)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, n=4, seed=0, size=96, categories=["brushed_metal", "woven_fabric"])
    return list(open_dataset(f"synth:{root}").samples())


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def correct_answer(sample: Sample, reasoning: str = "The evidence is clear.") -> str:
    if sample.label:
        box = defect_box(sample.load_mask())
        return Answer(True, sample.defect, box, 0.9, think_block(reasoning)).text
    return Answer(False, None, None, 0.1, think_block(reasoning)).text


def wrong_answer(sample: Sample) -> str:
    if sample.label:
        return Answer(False, None, None, 0.2, think_block("Nothing wrong here.")).text
    return Answer(True, "scratch", (100, 100, 200, 200), 0.8, think_block("A scratch.")).text


class Oracle:
    """A scripted teacher that recognises each image by its pixels (so it knows the label, as a test
    oracle may) and answers as ``behaviour`` says for that sample and attempt; it records every
    conversation it is sent.

    ``behaviour(sample, attempt, request)`` returns the answer turn's text (after one proposal crop), or a
    `ScriptedTurn` to play instead of the crop (a fault); ``attempt`` counts from 1 per sample.
    """

    def __init__(self, samples: list[Sample], behaviour: Callable[[Sample, int, str], str | ScriptedTurn]):
        self.truth = {_digest(s.load_image()): s for s in samples}
        self.behaviour = behaviour
        self.attempts: Counter[str] = Counter()
        self.requests: list[list[dict]] = []
        self.backend = ScriptedBackend(policy=self, label="oracle")

    def __call__(self, index: int, messages: list[dict]) -> ScriptedTurn | str:
        self.requests.append(messages)
        sample = self.truth[_digest(messages[1]["content"][0]["image"])]
        if index == 0:
            self.attempts[sample.key] += 1
        request = messages[1]["content"][1]["text"]
        turn = self.behaviour(sample, self.attempts[sample.key], request)
        if isinstance(turn, ScriptedTurn):
            return turn
        return CROP_ANY.text if index == 0 else turn

    def user_texts(self) -> list[str]:
        return [m[1]["content"][1]["text"] for m in self.requests]


def _teacher(backend, **kwargs) -> ModelTeacher:
    return ModelTeacher(backend, config=CONFIG, **kwargs)


def _build(samples: list[Sample], out: Path, teacher: ModelTeacher, **kwargs):
    try:
        return build_trajectories(samples, out, teacher=teacher, exclude_categories=[], **kwargs)
    finally:
        teacher.close()


def test_a_correct_teacher_writes_the_station_conversation(samples, tmp_path):
    oracle = Oracle(samples, lambda s, attempt, request: correct_answer(s))
    report = _build(samples, tmp_path / "set", _teacher(oracle.backend))
    n_good = sum(not s.label for s in samples)
    assert report.written == 2 * n_good and report.good == report.defective == n_good
    assert report.teacher["kind"] == "model" and report.teacher["model"] == "scripted:oracle"
    figures = report.curation
    assert figures["samples"] == figures["attempts"] == figures["kept_first_try"] == report.written
    assert figures["dropped"] == figures["malformed"] == 0 and not report.rejected

    lookup = {s.key: s for s in samples}
    registry = default_registry()
    trajectories = list(load_trajectories(tmp_path / "set"))
    assert len(trajectories) == report.written
    for trajectory in trajectories:
        sample = lookup[trajectory.source]
        assert render_chat(trajectory.messages, trajectory.tools) == trajectory.text
        assert trajectory.tools == registry.schemas()
        check_trajectory(trajectory.messages, sample)
        assert trajectory.messages[1]["content"][1]["text"] == user_text(sample.category)
        asking, crop_result, final = trajectory.messages[2:]
        assert asking == CROP_ANY.message()
        again = registry.call("crop", {}, ToolContext(frame=sample.load_image(), product=sample.category))
        assert crop_result["content"][0]["text"] == again.text
        assert json.loads(again.text)["source"] == "proposal"
        assert np.array_equal(crop_result["content"][1]["image"], again.images[0])
        assert final == parse_turn(correct_answer(sample)).message()

    outcomes = [json.loads(line) for line in (tmp_path / "set" / CURATION_FILE).read_text().splitlines()]
    assert {o["trajectory_id"] for o in outcomes} == {t.id for t in trajectories}
    assert all(o["kept"] and o["chosen"] == 1 and len(o["attempts"]) == 1 for o in outcomes)


def test_wrong_verdicts_are_retried_then_dropped_and_balance_holds(samples, tmp_path):
    stubborn = next(s for s in samples if s.label)
    oracle = Oracle(
        samples, lambda s, attempt, request: wrong_answer(s) if s == stubborn else correct_answer(s)
    )
    n_good = sum(not s.label for s in samples)
    total = 2 * (n_good - 1)  # one defective sample to spare, so the dropped one is replaced
    report = _build(samples, tmp_path / "set", _teacher(oracle.backend, retries=2), total=total, seed=1)
    assert report.written == total and report.good == report.defective == total // 2
    assert oracle.attempts[stubborn.key] == 3
    assert report.rejected == [
        {
            "source": stubborn.key,
            "reason": "no trajectory kept after 3 attempt(s): " + ", ".join(["wrong_verdict"] * 3),
        }
    ]
    assert report.curation["dropped"] == 1 and report.curation["rejections"] == {"wrong_verdict": 3}
    (dropped,) = [o for o in report.outcomes if not o["kept"]]
    assert dropped["source"] == stubborn.key and dropped["trajectory_id"] is None
    first, *retries = dropped["attempts"]
    assert first["hint"] is None and all("wrong verdict" in a["hint"] for a in retries)
    assert stubborn.key not in {t.source for t in load_trajectories(tmp_path / "set")}


def test_a_hinted_retry_recovers_and_the_hint_is_never_stored(samples, tmp_path):
    oracle = Oracle(
        samples,
        lambda s, attempt, request: correct_answer(s) if "Note:" in request else wrong_answer(s),
    )
    report = _build(samples, tmp_path / "set", _teacher(oracle.backend, retries=1))
    assert report.written == len(samples) and report.curation["recovered"] == len(samples)
    assert report.curation["rejections"] == {"wrong_verdict": len(samples)}
    hinted = [text for text in oracle.user_texts() if "Note:" in text]
    assert hinted and all("[" not in text and not any(c.isdigit() for c in text) for text in hinted)
    for trajectory in load_trajectories(tmp_path / "set"):
        assert "Note" not in trajectory.text
        assert trajectory.messages[1]["content"][1]["text"] == user_text(trajectory.category)


def test_label_hints_state_the_label_but_never_a_box(samples, tmp_path):
    defective = [s for s in samples if s.label][:1]
    good = [s for s in samples if not s.label][:1]
    oracle = Oracle(
        samples, lambda s, attempt, request: correct_answer(s) if attempt > 1 else wrong_answer(s)
    )
    _build(defective + good, tmp_path / "set", _teacher(oracle.backend, hints="label"))
    hints = [text for text in oracle.user_texts() if "Note:" in text]
    assert any(f"known to be defective ({defective[0].defect})" in text for text in hints)
    assert any("known to be free of defects" in text for text in hints)
    assert not any(c.isdigit() for text in hints for c in text)


def test_reasoning_that_echoes_the_hint_is_rejected(samples, tmp_path):
    def behaviour(sample: Sample, attempt: int, request: str) -> str:
        if attempt == 1:
            return wrong_answer(sample)
        if attempt == 2:
            return correct_answer(sample, "As the previous inspection was wrong, the answer flips.")
        return correct_answer(sample)

    oracle = Oracle(samples, behaviour)
    report = _build(
        samples[:1], tmp_path / "set", _teacher(oracle.backend), balance=float(not samples[0].label)
    )
    (outcome,) = report.outcomes
    assert [a["code"] for a in outcome["attempts"]] == ["wrong_verdict", "hint_echo", None]
    assert outcome["chosen"] == 3


def test_retries_none_gives_no_hint(samples):
    oracle = Oracle(samples, lambda s, attempt, request: wrong_answer(s))
    with _teacher(oracle.backend, retries=2, hints="none") as teacher, pytest.raises(TeacherRejected):
        teacher.trajectory(samples[0], np.random.default_rng(0))
    assert oracle.user_texts() == [user_text(samples[0].category)] * 6  # two rounds per attempt
    assert [a.hint for a in teacher.last_outcome.attempts] == [None] * 3


@pytest.mark.parametrize(
    ("fault", "code"),
    [("garbage", "parse_error"), ("malformed_tool_call", "parse_error"), ("truncated", "token_limit")],
)
def test_malformed_output_is_counted(samples, tmp_path, fault, code):
    turns, _ = FAULTS[fault]
    good = [s for s in samples if not s.label]
    oracle = Oracle(good, lambda s, attempt, request: turns[0] if attempt == 1 else correct_answer(s))
    report = _build(good, tmp_path / "set", _teacher(oracle.backend, retries=1), balance=1.0)
    assert report.written == len(good)
    assert report.curation["malformed"] == len(good) and report.curation["rejections"] == {code: len(good)}
    first_attempts = [o["attempts"][0] for o in report.outcomes]
    assert all(a["code"] == code and a["detail"] for a in first_attempts)
    second_hints = [o["attempts"][1]["hint"] for o in report.outcomes]
    assert all(h.startswith("Note: Your previous reply") for h in second_hints)


def test_a_teacher_that_never_parses_is_dropped_and_counted(samples, tmp_path):
    report = _build(samples, tmp_path / "set", _teacher(ScriptedBackend.fault("garbage"), retries=1))
    assert report.written == 0 and report.curation["dropped"] == len(samples)
    assert report.curation["malformed"] == report.curation["attempts"] == 2 * len(samples)
    assert len(report.rejected) == len(samples)


def test_a_failing_backend_stops_the_build(samples, tmp_path):
    teacher = _teacher(ScriptedBackend.fault("raise"), retries=1, max_backend_errors=3)
    with pytest.raises(TeacherUnavailable, match="3 attempts in a row"):
        _build(samples, tmp_path / "set", teacher)


def judge_backend(score_for: Callable[[str], str | ScriptedTurn]) -> ScriptedBackend:
    """A scripted judge that reads the transcript it is shown and replies ``score_for(transcript)``."""

    def policy(index: int, messages: list[dict]) -> str | ScriptedTurn:
        assert messages[0] == {"role": "system", "content": JUDGE_PROMPT}
        text = "\n".join(p["text"] for p in messages[1]["content"] if p["type"] == "text")
        return score_for(text)

    return ScriptedBackend(policy=policy, label="judge")


def test_the_judge_keeps_the_better_candidate(samples, tmp_path):
    oracle = Oracle(
        samples,
        lambda s, attempt, request: correct_answer(s, "Plain." if attempt % 2 else "Grounded in the crop."),
    )
    judge = Judge(judge_backend(lambda t: '{"score": 9}' if "Grounded" in t else "Score: 3/10"))
    report = _build(samples, tmp_path / "set", _teacher(oracle.backend, judge=judge, candidates=2))
    assert report.written == len(samples)
    for outcome in report.outcomes:
        assert [a["judge_score"] for a in outcome["attempts"]] == [3.0, 9.0] and outcome["chosen"] == 2
    assert all("Grounded in the crop." in t.text for t in load_trajectories(tmp_path / "set"))
    assert report.curation["judge"] == {
        "scored": 2 * len(samples),
        "failed": 0,
        "mean": 6.0,
        "mean_kept": 9.0,
    }


def test_a_low_judge_score_rejects_when_asked(samples, tmp_path):
    oracle = Oracle(samples, lambda s, attempt, request: correct_answer(s))
    judge = Judge(judge_backend(lambda t: "I would give it a 2/10."))
    teacher = _teacher(oracle.backend, judge=judge, retries=1, min_judge_score=5)
    report = _build(samples, tmp_path / "set", teacher)
    assert report.written == 0 and report.curation["rejections"] == {"judge_low": 2 * len(samples)}


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot judge this.",
        '{"score": "excellent"}',
        "Score: 42",
        ScriptedTurn(error="judge server down (injected)"),
        ScriptedTurn("<think>\nIt deserves 8", finish_reason="length"),
    ],
)
def test_judge_garbage_never_stops_the_build(samples, tmp_path, reply):
    oracle = Oracle(samples, lambda s, attempt, request: correct_answer(s))
    judge = Judge(judge_backend(lambda t: reply))
    report = _build(samples, tmp_path / "set", _teacher(oracle.backend, judge=judge, min_judge_score=9))
    assert report.written == len(samples)
    attempts = [a for o in report.outcomes for a in o["attempts"]]
    assert all(a["kept"] and a["judge_score"] is None and a["judge_error"] for a in attempts)
    assert report.curation["judge"]["failed"] == len(samples) and report.curation["judge"]["mean"] is None


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 7, "reason": "fine"}', 7.0),
        ('Here is my review:\n```json\n{"reason": "ok", "Score": "8"}\n```', 8.0),
        ("<think>\nStep 1 scores 2, step 3 scores 9.\n</think>\nScore: 6/10", 6.0),
        ('reasoning...</think>\n{"score": 4}', 4.0),
        ("Overall I'd rate it 7 out of 10.", 7.0),
        ("  9  ", 9.0),
        ("**Score:** 5", 5.0),
        ('{"score": 11} but really score: 10', 10.0),
        ("<think>\nIt deserves 8", None),
        ("no number", None),
        ('{"score": true}', None),
        ("Score: 0", None),
        ("", None),
    ],
)
def test_parse_score_reads_what_judges_write(text, score):
    assert parse_score(text) == score


def test_no_ground_truth_box_reaches_any_tool_or_request(samples, tmp_path):
    calls: list[tuple[str, dict, ToolContext]] = []
    registry = default_registry()
    real_call = registry.call

    def recording_call(name: object, arguments: object, context: ToolContext) -> Observation:
        calls.append((str(name), dict(arguments), context))  # type: ignore[arg-type]
        return real_call(name, arguments, context)

    registry.call = recording_call  # type: ignore[method-assign]

    def behaviour(sample: Sample, attempt: int, request: str) -> str:
        return wrong_answer(sample) if attempt == 1 else correct_answer(sample)

    oracle = Oracle(samples, behaviour)
    for hints in ("feedback", "label"):
        teacher = _teacher(oracle.backend, registry=registry, hints=hints)
        _build(samples, tmp_path / hints, teacher)
    # The tools get the frame and the product, nothing derived from the label, and no box at all.
    images = {_digest(s.load_image()) for s in samples}
    assert calls and all(name == "crop" and args == {} for name, args, _ in calls)
    assert all(_digest(context.frame) in images for _, _, context in calls)
    sent = json.dumps([[_texts(m) for m in request] for request in oracle.requests])
    for sample in (s for s in samples if s.label):
        mask = sample.load_mask()
        height, width = mask.shape
        truth = [defect_box(mask), *(px_to_rel(b, width, height) for b in component_boxes(mask))]
        for box in truth:
            assert json.dumps(list(box)) not in sent
            assert all(list(box) != args.get("bbox") for _, args, _ in calls)
    crop_observations = [
        json.loads(p["text"])
        for request in oracle.requests
        for m in request
        if m["role"] == "tool"
        for p in m["content"]
        if p["type"] == "text"
    ]
    assert crop_observations and all(o["source"] == "proposal" for o in crop_observations)


def _texts(message: dict) -> list[str]:
    content = message["content"]
    if isinstance(content, str):
        return [content, json.dumps(message.get("tool_calls", []))]
    return [p["text"] for p in content if p["type"] == "text"]


def test_type_names_follow_the_dataset_and_boxes_must_touch_the_defect(samples, tmp_path):
    defective = [s for s in samples if s.label][:2]
    renamed, missed = defective

    def behaviour(sample: Sample, attempt: int, request: str) -> str:
        if sample == renamed:  # the teacher's own spelling of the label's name
            spelled = sample.defect.replace("_", " ").title()
            return Answer(True, spelled, defect_box(sample.load_mask()), 0.9, think_block("Seen.")).text
        if attempt == 1:  # a box far from the defect, then the right one
            return Answer(True, sample.defect, (0, 0, 1, 1), 0.9, think_block("Seen.")).text
        return correct_answer(sample)

    oracle = Oracle(samples, behaviour)
    report = _build(defective, tmp_path / "set", _teacher(oracle.backend), balance=0.0)
    by_source = {o["source"]: o for o in report.outcomes}
    assert by_source[renamed.key]["chosen"] == 1
    assert [a["code"] for a in by_source[missed.key]["attempts"]] == ["box_miss", None]
    (stored,) = [t for t in load_trajectories(tmp_path / "set") if t.source == renamed.key]
    answer = parse_turn(stored.messages[-1]["content"])
    assert answer.type == renamed.defect and answer.content == think_block("Seen.")


def test_cli_builds_with_a_scripted_teacher_and_judge(tmp_path):
    write_dataset(tmp_path / "parts", n=2, seed=0, size=96, categories=["brushed_metal", "woven_fabric"])
    teacher_script = tmp_path / "teacher.json"
    teacher_script.write_text(json.dumps({"turns": [CROP_ANY.text, ANSWER_GOOD]}))
    judge_script = tmp_path / "judge.json"
    judge_script.write_text(json.dumps({"turns": ['Verdict: {"score": 8, "reason": "grounded"}']}))
    out = tmp_path / "cot"
    args = [
        "cot",
        "--dataset",
        f"synth:{tmp_path / 'parts'}",
        "--out",
        str(out),
        "--teacher",
        "model",
        "--backend",
        "scripted",
        "--model",
        str(teacher_script),
        "--judge-model",
        str(judge_script),
        "--balance",
        "0.5",
        "--retries",
        "1",
        "--json",
    ]
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # The script only ever answers "good": defective parts are dropped after their retry, and the builder
    # cuts the good ones back to keep the balance.
    assert (
        report["teacher"]["kind"] == "model" and report["teacher"]["judge"] == f"scripted:{judge_script.name}"
    )
    figures = report["curation"]
    assert figures["dropped"] == sum(o["label"] for o in report["outcomes"]) > 0
    assert figures["rejections"] == {"wrong_verdict": 2 * figures["dropped"]}
    assert report["written"] == 0 and (out / CURATION_FILE).is_file()

    good_only = [*args[:4], str(tmp_path / "good"), *args[5:]]
    good_only[good_only.index("0.5")] = "1"
    result = CliRunner().invoke(train, good_only)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["written"] == report["good"] > 0 and report["curation"]["judge"]["mean_kept"] == 8.0
    trajectories = list(load_trajectories(tmp_path / "good"))
    assert len(trajectories) == report["written"]
    assert all(render_chat(t.messages, t.tools) == t.text for t in trajectories)
    table = CliRunner().invoke(train, [*good_only[:4], str(tmp_path / "table"), *good_only[5:-1]])
    assert table.exit_code == 0 and "dropped after all retries" in table.output and "8.00" in table.output


def test_cli_refuses_model_options_without_the_model_teacher(tmp_path):
    base = ["cot", "--dataset", f"synth:{tmp_path}", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(train, [*base, "--judge-model", "x"])
    assert result.exit_code == 2 and "--teacher model" in result.output
    result = CliRunner().invoke(train, [*base, "--teacher", "model"])
    assert result.exit_code == 2 and "--model" in result.output
    result = CliRunner().invoke(
        train,
        [
            *base,
            "--teacher",
            "model",
            "--backend",
            "scripted",
            "--model",
            "answer:good",
            "--temperature",
            "1",
        ],
    )
    assert result.exit_code == 2 and "openai" in result.output
    assert not (tmp_path / "o" / TRAJECTORIES_FILE).exists()


def test_a_station_with_its_own_request_gets_trajectories_with_that_request(samples):
    oracle = Oracle(
        samples, lambda s, attempt, request: correct_answer(s) if attempt > 1 else wrong_answer(s)
    )
    config = AgentConfig(deadline_s=30.0, instruction="Check the part against its prior.")
    with ModelTeacher(oracle.backend, config=config) as teacher:
        messages = teacher.trajectory(samples[0], np.random.default_rng(0))
    own = user_text(samples[0].category, config.instruction)
    assert messages[1]["content"][1]["text"] == own
    assert oracle.user_texts()[0] == own and oracle.user_texts()[-1].startswith(own + " Note: ")


def test_a_confidence_against_the_verdict_is_rejected(samples):
    defective = next(s for s in samples if s.label)

    def behaviour(sample: Sample, attempt: int, request: str) -> str:
        if attempt == 1:  # "defective", but a 0.2 probability of a defect: the station would accept it
            box = defect_box(sample.load_mask())
            return Answer(True, sample.defect, box, 0.2, think_block("A defect.")).text
        return correct_answer(sample)

    oracle = Oracle(samples, behaviour)
    with _teacher(oracle.backend) as teacher:
        teacher.trajectory(defective, np.random.default_rng(0))
    first, second = teacher.last_outcome.attempts
    assert first.code == "confidence_disagrees" and second.kept
    assert "probability that the part is defective" in second.hint
