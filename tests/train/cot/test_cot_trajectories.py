"""Indus-CoT trajectories built by the programmatic teacher on a small synthetic set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from calibration.datasets import open_dataset
from calibration.synth import write_dataset
from station.protocol import Answer, ToolCalls, parse_turn, render_chat
from tools.boxes import rel_to_px
from tools.prior import PriorStore
from tools.registry import ToolContext
from tools.toolkit import default_registry
from train.cot import (
    LeakageFilter,
    ProgrammaticTeacher,
    build_trajectories,
    check_trajectory,
    load_trajectories,
)
from train.cot.dataset import LEAKAGE_FILE, TRAJECTORIES_FILE


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, n=4, seed=0, size=128)
    return list(open_dataset(f"synth:{root}").samples())


@pytest.fixture(scope="module")
def built(samples: list, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("cot") / "set"
    return out, build_trajectories(samples, out, seed=0)


@pytest.fixture(scope="module")
def trajectories(built: tuple[Path, object]) -> list:
    return list(load_trajectories(built[0]))


def _by_key(samples: list) -> dict:
    return {s.key: s for s in samples}


def test_every_turn_reparses_and_answers_agree_with_labels(samples, trajectories):
    lookup = _by_key(samples)
    for trajectory in trajectories:
        sample = lookup[trajectory.source]
        check_trajectory(trajectory.messages, sample)
        turns = [m for m in trajectory.messages if m["role"] == "assistant"]
        *asking, final = turns
        assert all(isinstance(parse_turn(_asking_text(m)), ToolCalls) for m in asking)
        answer = parse_turn(final["content"])
        assert isinstance(answer, Answer)
        assert answer.anomaly == bool(sample.label)
        assert answer.type == (sample.defect if sample.label else None)
        if sample.label:
            mask = sample.load_mask()
            x1, y1, x2, y2 = rel_to_px(answer.bbox, mask.shape[1], mask.shape[0])
            assert mask[y1:y2, x1:x2].any()
        else:
            assert answer.bbox is None


def _asking_text(message: dict) -> str:
    """The raw text of an asking turn as a model generates it: the think block, then the calls."""
    calls = [
        f'<tool_call>\n{{"name": "{f["name"]}", "arguments": {f["arguments"]}}}\n</tool_call>'
        for f in (c["function"] for c in message["tool_calls"])
    ]
    return "\n".join([message["content"], *calls])


def test_tool_observations_are_the_real_ones(samples, trajectories):
    lookup = _by_key(samples)
    registry = default_registry()
    priors = PriorStore.default(embedder="lexical")
    checked = set()
    for trajectory in trajectories:
        sample = lookup[trajectory.source]
        context = ToolContext(frame=sample.load_image(), product=sample.category, priors=priors)
        messages = trajectory.messages
        for i, message in enumerate(messages):
            if message["role"] != "assistant" or not message.get("tool_calls"):
                continue
            for j, call in enumerate(message["tool_calls"]):
                name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
                again = registry.call(name, arguments, context)
                stored = messages[i + 1 + j]
                assert stored["role"] == "tool" and stored["name"] == name
                assert stored["content"][0]["text"] == again.text
                images = [p["image"] for p in stored["content"][1:]]
                assert len(images) == len(again.images)
                assert all(np.array_equal(a, b) for a, b in zip(images, again.images, strict=True))
                checked.add(name)
    assert {"crop", "enhance", "prior", "measure"} <= checked


def test_balance_is_exact_and_some_answers_are_direct(built, trajectories):
    _, report = built
    labels = [t.label for t in trajectories]
    assert report.good == labels.count(0) == 12 and report.defective == labels.count(1) == 12
    assert report.direct_answers >= 1 and not report.rejected
    assert any(sum(m["role"] == "assistant" for m in t.messages) == 1 for t in trajectories)


def test_balance_ratio_and_total(samples, tmp_path):
    report = build_trajectories(samples, tmp_path / "quarter", seed=1, balance=0.25, total=16)
    assert (report.good, report.defective) == (4, 12)
    with pytest.raises(ValueError, match="available"):
        build_trajectories(samples, tmp_path / "too_many", seed=1, balance=0.5, total=100)


def test_leakage_filter_removes_benchmark_categories_and_reports_them(samples, tmp_path):
    renamed = {
        "brushed_metal": "pcb",
        "woven_fabric": "pcb1",
        "wood_grain": "transistor1",
        "lag_screw": "Metal-Nut",
    }
    mixed = [dataclasses.replace(s, category=renamed.get(s.category, s.category)) for s in samples]
    report = build_trajectories(mixed, tmp_path / "set", seed=0, max_per_category=4)
    assert set(report.leaks) == set(renamed.values())
    assert {c: v["count"] for c, v in report.leaks.items()} == dict.fromkeys(renamed.values(), 4)
    assert report.leaks["transistor1"]["matched"] == "transistor"
    assert "variant" in report.leaks["pcb"]["reason"]
    assert set(report.by_category) == {"hole_plate", "pin_connector"}
    written = json.loads((tmp_path / "set" / LEAKAGE_FILE).read_text())
    assert written["removed"] == report.leaks and "metal_nut" in written["evaluation_categories"]


def test_leakage_names_match_both_ways():
    names = LeakageFilter.names(["pcb1", "transistor", "bottle"])
    assert names.match("pcb").matched == "pcb1"
    assert names.match("transistor1").matched == "transistor"
    assert names.match("Bottles").matched == "bottle"
    assert names.match("woven_fabric") is None
    assert LeakageFilter.benchmarks().match("pin_connector") is None


def test_datasets_reads_the_jsonl(built):
    from datasets import load_dataset

    out, report = built
    data = load_dataset("json", data_files=str(out / TRAJECTORIES_FILE), split="train")
    assert len(data) == report.written
    first = data[0]
    assert first["messages"][0]["role"] == "system"
    assert all((out / path).is_file() for row in data for path in row["images"])


def test_round_trip_renders_the_stored_text(built, trajectories):
    out, _ = built
    for trajectory in trajectories:
        assert render_chat(trajectory.messages, trajectory.tools) == trajectory.text
        assert trajectory.tools == ProgrammaticTeacher().tools
    record = json.loads((out / TRAJECTORIES_FILE).read_text().splitlines()[0])
    assert record["images"][0] == f"images/{record['id']}_0.png"


def test_deterministic_for_a_seed(samples, built, tmp_path):
    out, _ = built
    build_trajectories(samples, tmp_path / "again", seed=0)
    assert (tmp_path / "again" / TRAJECTORIES_FILE).read_bytes() == (out / TRAJECTORIES_FILE).read_bytes()
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == sorted(p.name for p in (tmp_path / "again" / "images").iterdir())
    assert all(
        (out / "images" / n).read_bytes() == (tmp_path / "again" / "images" / n).read_bytes() for n in images
    )


def test_terse_style_names_no_number_but_the_defect_box(samples, tmp_path):
    """What a CPU-sized model must write: its own box (defects only), the confidence, nothing to guess."""
    import re

    out = tmp_path / "terse"
    build_trajectories(samples, out, seed=0, teacher=ProgrammaticTeacher(style="terse", prior_ratio=1.0))
    lookup = _by_key(samples)
    tools, openings = set(), set()
    for trajectory in load_trajectories(out):
        sample = lookup[trajectory.source]
        check_trajectory(trajectory.messages, sample)
        turns = [m for m in trajectory.messages if m["role"] == "assistant"]
        answer = parse_turn(turns[-1]["content"])
        allowed = {str(v) for v in answer.bbox or ()}
        for turn in turns:
            text = turn["content"] if isinstance(turn["content"], str) else _asking_text(turn)
            text = text.replace(json.dumps(answer.confidence), "")
            assert set(re.findall(r"\d+", text)) <= allowed, text
            for call in turn.get("tool_calls") or ():
                tools.add(call["function"]["name"])
                if call["function"]["name"] == "crop" and not sample.label:
                    assert json.loads(call["function"]["arguments"]) == {}
        if len(turns) > 1:
            product = sample.category.replace("_", " ")
            openings.add(turns[0]["content"].split(".")[0].replace(product, "PRODUCT"))
    assert "measure" not in tools and {"crop", "enhance", "prior"} <= tools
    assert len(openings) == 1


def test_unknown_teacher_style_is_refused():
    with pytest.raises(ValueError, match="style"):
        ProgrammaticTeacher(style="poetic")
