"""The loop turns every model behaviour into a well-formed verdict, and records what happened."""

import json
import time

import numpy as np
import pytest

from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends.scripted import (
    ANSWER_DEFECT,
    ANSWER_GOOD,
    CROP_CALL,
    FAULTS,
    ScriptedBackend,
    ScriptedTurn,
)
from station.protocol import ToolCall, ToolCalls
from station.verdict import Verdict
from tools.prior import PriorStore


@pytest.fixture
def frame():
    return np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def inspect(backend, frame, **config):
    agent = Agent(backend, AgentConfig(**config), priors=PriorStore.default(embedder="lexical"))
    try:
        return agent.inspect(frame, "bottle", part_id="p1")
    finally:
        agent.close()


def test_direct_answer_accepts_a_good_part(frame):
    verdict = inspect(ScriptedBackend([ANSWER_GOOD]), frame)
    assert verdict.decision == "accept" and not verdict.fail_safe
    assert verdict.anomaly is False and verdict.confidence == 0.1 and verdict.confidence_source == "stated"
    assert verdict.part_id == "p1" and verdict.product == "bottle"
    assert [r.kind for r in verdict.trace] == ["answer"]


def test_tool_rounds_feed_observations_back_and_are_traced(frame):
    seen = []

    def policy(index, messages):
        seen.append(messages)
        return [
            CROP_CALL,
            ToolCalls((ToolCall("prior", {}), ToolCall("enhance", {"mode": "edges"}))).text,
            ANSWER_DEFECT,
        ][index]

    verdict = inspect(ScriptedBackend(policy=policy), frame)
    assert verdict.decision == "reject" and verdict.type == "crack"
    assert verdict.bbox == [400, 400, 600, 600] and verdict.bbox_px == [256, 192, 384, 288]
    assert verdict.tool_calls == 3
    assert [[c.name for c in r.tool_calls] for r in verdict.trace] == [["crop"], ["prior", "enhance"], []]
    # Round 2 saw the crop: the assistant turn and a tool message holding the patch.
    assert [m["role"] for m in seen[1]] == ["system", "user", "assistant", "tool"]
    crop_msg = seen[1][3]["content"]
    assert json.loads(crop_msg[0]["text"])["source"] == "model" and crop_msg[1]["image"].ndim == 3
    assert [m["role"] for m in seen[2]][-3:] == ["assistant", "tool", "tool"]
    assert json.loads(seen[2][-2]["content"][0]["text"])["name"] == "bottle"
    assert [name for name, _ in verdict.evidence] == ["frame", "crop", "enhance"]
    assert verdict.timings.tools_s > 0 and verdict.timings.total_s >= verdict.timings.tools_s


def test_logit_confidence_wins_and_the_threshold_decides(frame):
    verdict = inspect(ScriptedBackend([ScriptedTurn(ANSWER_GOOD, verdict_prob=0.7)]), frame, threshold=0.6)
    assert (
        verdict.confidence == 0.7
        and verdict.confidence_source == "logits"
        and verdict.stated_confidence == 0.1
    )
    assert verdict.anomaly is False and verdict.decision == "reject"
    relaxed = inspect(ScriptedBackend([ScriptedTurn(ANSWER_GOOD, verdict_prob=0.7)]), frame, threshold=0.8)
    assert relaxed.decision == "accept"


@pytest.mark.parametrize(
    ("fault", "reason", "detail"),
    [
        ("garbage", "parse_error", "no_action"),
        ("malformed_tool_call", "parse_error", "bad_json"),
        ("unknown_tool", "tool_error", "unknown_tool"),
        ("invalid_box", "parse_error", "bad_answer"),
        ("invalid_tool_box", "tool_error", "invalid_bbox"),
        ("endless_tool_calls", "tool_limit", "exceed the limit of 6"),
        ("truncated", "token_limit", "cut off"),
        ("raise", "backend_error", "CUDA out of memory"),
    ],
)
def test_every_fault_ends_in_a_fail_safe_reject_with_its_reason(frame, fault, reason, detail):
    verdict = inspect(ScriptedBackend.fault(fault), frame)
    assert verdict.decision == "reject" and verdict.fail_safe
    assert verdict.reason == reason
    assert detail in verdict.detail
    assert verdict.confidence is None and verdict.anomaly is None
    assert verdict.model == f"scripted:fault:{fault}"
    Verdict.model_validate_json(verdict.model_dump_json())  # well-formed, round-trips


def test_a_slow_model_is_abandoned_at_the_deadline(frame):
    backend = ScriptedBackend.fault("slow")
    agent = Agent(backend, AgentConfig(deadline_s=0.3))
    start = time.monotonic()
    verdict = agent.inspect(frame)
    elapsed = time.monotonic() - start
    agent.close()
    assert verdict.reason == "deadline" and verdict.fail_safe
    assert elapsed < 0.3 + 0.05
    assert verdict.timings.total_s < 0.35


def test_a_deadline_in_the_middle_of_tool_rounds(frame):
    backend = ScriptedBackend([CROP_CALL, ScriptedTurn(ANSWER_GOOD, delay_s=5)])
    start = time.monotonic()
    verdict = inspect(backend, frame, deadline_s=0.25)
    assert verdict.reason == "deadline" and time.monotonic() - start < 0.3
    assert verdict.tool_calls == 1


def test_the_agent_keeps_serving_after_a_hung_model(frame):
    agent = Agent(ScriptedBackend([ScriptedTurn(ANSWER_GOOD, delay_s=0.2)]), AgentConfig(deadline_s=0.1))
    first = agent.inspect(frame)
    assert first.reason == "deadline"
    time.sleep(0.25)  # the abandoned call finishes in the background
    second = agent.inspect(frame, config=AgentConfig(deadline_s=1.0))
    agent.close()
    assert second.decision == "accept"


def test_a_tool_error_can_be_corrected_once(frame):
    bad = ToolCalls((ToolCall("measure", {"operation": "distance", "items": [[1, 2]]}),)).text
    verdict = inspect(ScriptedBackend([bad, ANSWER_GOOD]), frame)
    assert verdict.decision == "accept" and verdict.trace[0].tool_calls[0].error["code"] == "invalid_items"
    strict = inspect(ScriptedBackend([bad, ANSWER_GOOD]), frame, max_tool_errors=0)
    assert strict.reason == "tool_error"


@pytest.mark.parametrize(
    "image", [None, "frame.png", np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 5), np.uint8)]
)
def test_corrupt_frames_are_rejected_without_calling_the_model(image):
    backend = ScriptedBackend(policy=lambda i, m: pytest.fail("the model must not run"))
    verdict = inspect(backend, image)
    assert verdict.reason == "corrupt_frame" and verdict.trace == []


def test_a_backend_that_returns_nonsense_or_cannot_open_is_a_backend_error(frame):
    class Broken(ScriptedBackend):
        def open_session(self, tools):
            raise OSError("model file vanished")

    assert inspect(Broken([ANSWER_GOOD]), frame).reason == "backend_error"
    exhausted = inspect(ScriptedBackend([CROP_CALL]), frame)
    assert exhausted.reason == "backend_error" and "only 1 turns" in exhausted.detail


def test_a_bug_inside_the_loop_still_yields_a_reject(frame, monkeypatch):
    agent = Agent(ScriptedBackend([ANSWER_GOOD]))
    monkeypatch.setattr(agent.registry, "schemas", lambda: 1 / 0)
    monkeypatch.setattr("station.agent.parse_turn", lambda text: 1 / 0)
    verdict = agent.inspect(frame)
    agent.close()
    assert verdict.reason == "internal_error" and "ZeroDivisionError" in verdict.detail


def test_every_named_fault_is_covered():
    covered = {"garbage", "malformed_tool_call", "unknown_tool", "invalid_box", "invalid_tool_box"}
    covered |= {"endless_tool_calls", "truncated", "raise", "slow"}
    assert set(FAULTS) == covered


def test_scripts_load_from_files_and_recorded_verdicts(tmp_path, frame):
    script = tmp_path / "script.yaml"
    script.write_text("turns:\n  - text: 'x'\n    delay_s: 0\n  - 'y'\nrepeat_last: true\n")
    backend = ScriptedBackend.from_file(script)
    assert backend.turn(5, []).text == "y"
    recorded = inspect(ScriptedBackend([CROP_CALL, ANSWER_DEFECT]), frame)
    (tmp_path / "verdict.json").write_text(recorded.model_dump_json())
    replayed = inspect(ScriptedBackend.from_file(tmp_path / "verdict.json"), frame)
    assert replayed.model_dump(include={"decision", "type", "bbox", "tool_calls"}) == recorded.model_dump(
        include={"decision", "type", "bbox", "tool_calls"}
    )
    (tmp_path / "bad.yaml").write_text("turns:\n  - {nonsense: 1}\n")
    with pytest.raises(ValueError, match="unknown turn keys: nonsense"):
        ScriptedBackend.from_file(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="cannot read script"):
        ScriptedBackend.from_file(tmp_path / "missing.yaml")
