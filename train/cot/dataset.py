"""Build, curate, store and reload Indus-CoT trajectory sets.

On disk a set is a folder: ``trajectories.jsonl`` (one record per trajectory), ``images/`` (every image
of every conversation as PNG, named ``<id>_<n>.png`` in order of appearance) and ``leakage_report.json``.
Message contents are always lists of parts on disk, so that Arrow (``datasets.load_dataset("json")``)
sees one type per column; `load_trajectories` turns them back into the protocol's own messages, which
render to exactly the stored ``text``.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.datasets.base import Sample
from station.protocol import Answer, ToolCall, ToolCalls, parse_turn, render_chat
from tools.image import load_image, save_image
from train.cot.leakage import Leak, LeakageFilter
from train.cot.teacher import ProgrammaticTeacher, SampleOutcome, Teacher, summarize

TRAJECTORIES_FILE = "trajectories.jsonl"
IMAGES_DIR = "images"
LEAKAGE_FILE = "leakage_report.json"
CURATION_FILE = "curation.jsonl"


class CurationError(ValueError):
    """A trajectory that must not be trained on; the message says which turn and why."""


@dataclass
class BuildReport:
    """What a build wrote and what it left out, and why."""

    written: int = 0
    good: int = 0
    defective: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    tool_calls: dict[str, int] = field(default_factory=dict)
    direct_answers: int = 0
    leaks: dict[str, dict] = field(default_factory=dict)  # category -> count, matched, reason
    rejected: list[dict] = field(default_factory=list)  # sample key -> why curation dropped it
    teacher: dict = field(default_factory=dict)  # what wrote the set (`Teacher.describe`)
    # A curating teacher's figures (`model_teacher.summarize`) and its per-sample outcomes, also written to
    # curation.jsonl; empty for a teacher that writes in one go.
    curation: dict = field(default_factory=dict)
    outcomes: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Trajectory:
    """One stored trajectory as protocol messages with numpy images, ready for a chat template."""

    id: str
    source: str
    category: str
    label: int
    defect: str
    messages: list[dict]
    tools: list[dict]
    text: str


def check_trajectory(messages: list[dict], sample: Sample) -> Counter[str]:
    """Raise CurationError unless every assistant turn parses to what it was meant to be, every tool call
    got an ok observation and the answer agrees with the label. Returns the tool calls by name."""
    calls: Counter[str] = Counter()
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not assistants or assistants[-1] != len(messages) - 1:
        raise CurationError("the conversation does not end in an assistant turn")
    for i in assistants:
        message = messages[i]
        intended = _turn(message)
        parsed = parse_turn(intended.text)
        if type(parsed) is not type(intended) or parsed.text != intended.text:
            raise CurationError(f"turn {i} parses as {parsed!r}, not as written")
        if isinstance(parsed, ToolCalls):
            results = messages[i + 1 : i + 1 + len(parsed.calls)]
            for call, result in zip(parsed.calls, results, strict=True):
                observation = json.loads(result["content"][0]["text"])
                if result["role"] != "tool" or observation.get("tool") != call.name:
                    raise CurationError(f"turn {i}: no observation for {call.name}")
                if "error" in observation:
                    raise CurationError(f"turn {i}: {call.name} failed: {observation['error']}")
                calls[call.name] += 1
        elif i != len(messages) - 1:
            raise CurationError(f"turn {i} answers before the end of the conversation")
    answer = parse_turn(_turn(messages[-1]).text)
    if not isinstance(answer, Answer):
        raise CurationError("the last turn is not an answer")
    expected_type = sample.defect if sample.label else None
    if answer.anomaly != bool(sample.label) or answer.type != expected_type:
        raise CurationError(
            f"answer {answer.payload()} disagrees with label {sample.label} ({sample.defect})"
        )
    if not sample.label and answer.bbox is not None:
        raise CurationError("a good part answered with a box")
    return calls


def _turn(message: dict) -> ToolCalls | Answer:
    """The turn an assistant message was made from, so the parser can be held to it."""
    if message.get("tool_calls"):
        calls = tuple(
            ToolCall(f["name"], json.loads(f["arguments"]), raw_arguments=f["arguments"])
            for f in (entry["function"] for entry in message["tool_calls"])
        )
        return ToolCalls(calls, content=message["content"])
    parsed = parse_turn(message["content"])
    if not isinstance(parsed, Answer):
        raise CurationError(f"an assistant turn without tool calls is no answer: {parsed!r}")
    return parsed


def select(
    samples: Iterable[Sample],
    rng: np.random.Generator,
    *,
    max_per_category: int | None,
    leakage: LeakageFilter,
    report: BuildReport,
) -> dict[int, list[Sample]]:
    """Candidates by label, leaked categories removed (and reported) and each category capped, shuffled."""
    by_category: dict[str, dict[int, list[Sample]]] = defaultdict(lambda: {0: [], 1: []})
    leaks: dict[str, Leak] = {}
    dropped: Counter[str] = Counter()
    for sample in samples:
        leak = leaks.get(sample.category) or leakage.match(sample.category)
        if leak is not None:
            leaks[sample.category] = leak
            dropped[sample.category] += 1
            continue
        by_category[sample.category][int(bool(sample.label))].append(sample)
    report.leaks = {
        c: {"count": n, "matched": leaks[c].matched, "dataset": leaks[c].dataset, "reason": leaks[c].reason()}
        for c, n in sorted(dropped.items())
    }
    pools: dict[int, list[Sample]] = {0: [], 1: []}
    for category in sorted(by_category):
        for label, group in by_category[category].items():
            order = rng.permutation(len(group))
            cap = len(group) if max_per_category is None else math.ceil(max_per_category / 2)
            pools[label] += [group[i] for i in order[:cap]]
    for label, pool in pools.items():
        pools[label] = [pool[i] for i in rng.permutation(len(pool))]
    return pools


def targets(good: int, defective: int, balance: float, total: int | None = None) -> tuple[int, int]:
    """Exact (good, defective) counts with good / total == ``balance`` (to the nearest trajectory)."""
    if not 0 <= balance <= 1:
        raise ValueError(f"balance must be the fraction of good parts in [0, 1], got {balance}")
    if total is None:
        limits = [n / share for n, share in ((good, balance), (defective, 1 - balance)) if share > 0]
        total = math.floor(min(limits) + 1e-9)
    n_good = round(total * balance)
    if n_good > good or total - n_good > defective:
        raise ValueError(
            f"{total} trajectories at balance {balance} need {n_good} good and {total - n_good} defective "
            f"samples; only {good} and {defective} are available"
        )
    return n_good, total - n_good


def build_trajectories(
    samples: Iterable[Sample],
    out: Path,
    *,
    seed: int = 0,
    balance: float = 0.5,
    total: int | None = None,
    max_per_category: int | None = None,
    exclude_categories: Sequence[str] | None = None,
    teacher: Teacher | None = None,
) -> BuildReport:
    """Write a curated, balanced trajectory set to ``out``.

    ``balance`` is the fraction of good parts; counts are exact (as many as the scarcer label allows, or
    ``total``); ``max_per_category`` caps each category at half that many of each label, before balancing.
    ``exclude_categories`` are the evaluation categories to keep out (default: the benchmarks'
    categories from the shipped priors). Trajectories that fail curation (here, or inside a teacher that
    retries, which then raises `CurationError`) are replaced by further samples of the same label while
    any remain, then both labels are cut back to keep the ratio exact. A curating teacher's per-sample
    outcomes (attempts, rejection reasons, judge scores) go to the report and to ``curation.jsonl``.
    """
    out = Path(out)
    if (out / TRAJECTORIES_FILE).exists():
        raise FileExistsError(f"{out / TRAJECTORIES_FILE} exists; choose a new folder")
    rng = np.random.default_rng(seed)
    teacher = teacher or ProgrammaticTeacher()
    leakage = (
        LeakageFilter.benchmarks() if exclude_categories is None else LeakageFilter.names(exclude_categories)
    )
    report = BuildReport(teacher=teacher.describe())
    outcomes: list[SampleOutcome] = []
    pools = select(samples, rng, max_per_category=max_per_category, leakage=leakage, report=report)
    wanted = dict(zip((0, 1), targets(len(pools[0]), len(pools[1]), balance, total), strict=True))
    built: dict[int, list[tuple[Sample, list[dict], Counter[str]]]] = {0: [], 1: []}
    for label, pool in pools.items():
        for sample in pool:
            if len(built[label]) == wanted[label]:
                break
            teacher.last_outcome = None
            try:
                messages = teacher.trajectory(sample, np.random.default_rng(rng.integers(2**63)))
                calls = check_trajectory(messages, sample)
            except CurationError as error:
                report.rejected.append({"source": sample.key, "reason": str(error)})
                continue
            finally:
                if teacher.last_outcome is not None:
                    outcomes.append(teacher.last_outcome)
            built[label].append((sample, messages, calls))
    if any(len(built[label]) < wanted[label] for label in (0, 1)):
        keep = targets(len(built[0]), len(built[1]), balance)
        built = {label: built[label][: keep[label]] for label in (0, 1)}

    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    by_source = {o.source: o for o in outcomes if o.kept}
    with (out / TRAJECTORIES_FILE).open("w", encoding="utf-8") as jsonl:
        for number, (sample, messages, calls) in enumerate(_interleave(built[0], built[1])):
            record = _record(f"cot-{number:06d}", sample, messages, teacher.tools, out)
            if sample.key in by_source:
                by_source[sample.key].trajectory_id = record["id"]
            jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.written += 1
            report.good += int(not sample.label)
            report.defective += int(bool(sample.label))
            report.by_category[sample.category] = report.by_category.get(sample.category, 0) + 1
            report.direct_answers += int(not calls)
            for name, count in calls.items():
                report.tool_calls[name] = report.tool_calls.get(name, 0) + count
    leak_report = {
        "evaluation_categories": leakage.categories,
        "removed": report.leaks,
        "kept_categories": sorted(report.by_category),
    }
    (out / LEAKAGE_FILE).write_text(
        json.dumps(leak_report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if outcomes:
        report.outcomes = [o.to_json() for o in outcomes]
        report.curation = summarize(outcomes)
        report.curation["kept_not_written"] = sum(o.kept and o.trajectory_id is None for o in outcomes)
        with (out / CURATION_FILE).open("w", encoding="utf-8") as jsonl:
            jsonl.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in report.outcomes)
    return report


def _interleave(first: list, second: list) -> Iterator:
    """Good and defective alternate in the file, so any prefix of it is balanced too."""
    for i in range(max(len(first), len(second))):
        yield from (group[i] for group in (first, second) if i < len(group))


def _record(trajectory_id: str, sample: Sample, messages: list[dict], tools: list[dict], out: Path) -> dict:
    images: list[str] = []

    def part(content: dict) -> dict:
        if content["type"] != "image":
            return content
        path = f"{IMAGES_DIR}/{trajectory_id}_{len(images)}.png"
        save_image(out / path, content["image"])
        images.append(path)
        return {"type": "image", "image": path}

    stored = []
    for message in messages:
        content = message["content"]
        parts = [part(c) for c in content] if isinstance(content, list) else _text_parts(content)
        stored.append({**message, "content": parts})
    return {
        "id": trajectory_id,
        "source": sample.key,
        "category": sample.category,
        "label": int(bool(sample.label)),
        "defect": sample.defect,
        "messages": stored,
        "images": images,
        "tools": tools,
        "text": render_chat(messages, tools),
    }


def _text_parts(text: str) -> list[dict]:
    return [{"type": "text", "text": text}] if text else []


def load_trajectories(folder: Path) -> Iterator[Trajectory]:
    """The stored trajectories as protocol messages with numpy images (what SFT renders and tokenizes)."""
    folder = Path(folder)
    with (folder / TRAJECTORIES_FILE).open(encoding="utf-8") as lines:
        for record in map(json.loads, lines):
            yield Trajectory(
                id=record["id"],
                source=record["source"],
                category=record["category"],
                label=record["label"],
                defect=record["defect"],
                messages=[protocol_message(m, folder) for m in record["messages"]],
                tools=record["tools"],
                text=record["text"],
            )


def protocol_message(message: dict, folder: Path) -> dict:
    """Back to the shape `station.protocol.messages` builds: text-only system and assistant content is a
    string, images are arrays. Keys Arrow filled with nulls are dropped, since the template tests keys."""
    message = {k: v for k, v in message.items() if v is not None}
    parts = [{k: v for k, v in p.items() if v is not None} for p in message["content"]]
    if message["role"] in ("system", "assistant"):
        return {**message, "content": "".join(p["text"] for p in parts)}
    return {
        **message,
        "content": [
            {"type": "image", "image": load_image(folder / p["image"])} if p["type"] == "image" else p
            for p in parts
        ],
    }
