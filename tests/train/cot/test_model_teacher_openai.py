"""The model teacher and its judge behind an OpenAI-compatible server: the fake server of the openai
backend's tests, which records every request it is sent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import open_dataset
from calibration.synth import write_dataset
from station.backends.openai import OpenAIBackend
from station.backends.scripted import ANSWER_DEFECT, ANSWER_GOOD
from station.protocol import ToolCall, ToolCalls, render_chat, user_text
from tools.toolkit import default_registry
from train.cot import Judge, ModelTeacher, build_trajectories, load_trajectories
from train.cot.model_teacher import JUDGE_PROMPT

pytest.importorskip("openai")

from tests.station.backends.test_openai import (  # after the skip: that module needs openai
    FakeServer,
    Scripted,
    chat_reply,
    http_server,  # noqa: F401 - the fixture `server` uses
    server,  # noqa: F401 - a fixture
)

THINK = "<think>\nA closer look at the most salient region.\n</think>"
CROP_REPLY = chat_reply(
    THINK,
    tool_calls=[{"id": "c0", "type": "function", "function": {"name": "crop", "arguments": "{}"}}],
)


@pytest.fixture(scope="module")
def good_sample(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, n=2, seed=0, size=96, categories=["brushed_metal"])
    return next(s for s in open_dataset(f"synth:{root}").samples() if not s.label)


def _build(sample, out: Path, teacher: ModelTeacher, *backends: OpenAIBackend):
    try:
        return build_trajectories([sample], out, teacher=teacher, balance=1.0, exclude_categories=[])
    finally:
        teacher.close()
        for backend in backends:
            backend.close()


def test_an_openai_teacher_and_judge_write_a_trajectory(server: FakeServer, good_sample, tmp_path):  # noqa: F811
    server.script(
        Scripted(body=CROP_REPLY),
        Scripted(body=chat_reply(ANSWER_GOOD)),
        Scripted(body=chat_reply('The transcript is grounded. {"score": 8, "reason": "reads the crop"}')),
    )
    teacher_backend = OpenAIBackend(server.url, "teacher")
    judge_backend = OpenAIBackend(server.url, "judge")
    teacher = ModelTeacher(teacher_backend, judge=Judge(judge_backend))
    report = _build(good_sample, tmp_path / "set", teacher, teacher_backend, judge_backend)

    assert report.written == 1 and report.curation["judge"]["mean_kept"] == 8.0
    first, second, judged = (r["json"] for r in server.requests)
    assert first["model"] == second["model"] == "teacher" and judged["model"] == "judge"
    assert first["tools"] == default_registry().schemas() and "tools" not in judged
    assert first["messages"][1]["content"][1]["text"] == user_text(good_sample.category)
    crop_result = second["messages"][-1]
    assert crop_result["role"] == "tool" and crop_result["content"][1]["type"] == "image_url"
    assert judged["messages"][0] == {"role": "system", "content": JUDGE_PROMPT}
    judge_parts = judged["messages"][1]["content"]
    assert [p["type"] for p in judge_parts].count("image_url") == 2  # the part and the crop
    assert "Label: good" in judge_parts[1]["text"]

    (trajectory,) = load_trajectories(tmp_path / "set")
    assert render_chat(trajectory.messages, trajectory.tools) == trajectory.text
    assert trajectory.messages[2] == ToolCalls((ToolCall("crop", {}),), content=THINK).message()
    assert trajectory.messages[-1] == {"role": "assistant", "content": ANSWER_GOOD}
    assert np.array_equal(trajectory.messages[1]["content"][0]["image"], good_sample.load_image())


def test_a_retry_carries_the_hint_to_the_server_but_not_into_the_set(
    server: FakeServer,  # noqa: F811
    good_sample,
    tmp_path,
):
    server.script(Scripted(body=chat_reply(ANSWER_DEFECT)), Scripted(body=chat_reply(ANSWER_GOOD)))
    backend = OpenAIBackend(server.url, "teacher")
    report = _build(good_sample, tmp_path / "set", ModelTeacher(backend), backend)

    assert report.written == 1 and report.curation["recovered"] == 1
    requests = [r["json"]["messages"][1]["content"][1]["text"] for r in server.requests]
    assert requests[0] == user_text(good_sample.category)
    assert requests[1].startswith(user_text(good_sample.category) + " Note:")
    assert "wrong verdict" in requests[1]
    (trajectory,) = load_trajectories(tmp_path / "set")
    assert trajectory.messages[1]["content"][1]["text"] == user_text(good_sample.category)
    assert "Note:" not in trajectory.text
    stored = json.loads((tmp_path / "set" / "curation.jsonl").read_text())
    assert [a["code"] for a in stored["attempts"]] == ["wrong_verdict", None]


def test_an_unreachable_judge_is_recorded_not_fatal(server: FakeServer, good_sample, tmp_path):  # noqa: F811
    server.script(
        Scripted(body=chat_reply(ANSWER_GOOD)), Scripted(status=500, body={"message": "judge down"})
    )
    teacher_backend = OpenAIBackend(server.url, "teacher")
    judge_backend = OpenAIBackend(server.url, "judge")
    teacher = ModelTeacher(teacher_backend, judge=Judge(judge_backend))
    report = _build(good_sample, tmp_path / "set", teacher, teacher_backend, judge_backend)
    assert report.written == 1
    (attempt,) = report.outcomes[0]["attempts"]
    assert attempt["judge_score"] is None and "judge down" in attempt["judge_error"]
