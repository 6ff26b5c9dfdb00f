"""The accuracy-gated GRPO reward of the IndusAgent paper (section 2.4), one function per term.

    R = R_format + R_cls * (1 + w_loc * R_loc + w_type * R_type + w_tool * R_tool)

R_cls gates everything but the format term: a wrong verdict earns no credit for its box, its defect name or
its tools, so the policy cannot farm auxiliary reward while misdiagnosing. The terms are pure functions of
parsed turns and numbers, so they are tested by hand and shared by every caller: the station's own
``Verdict`` trace (`reward_from_verdict`) and TRL's GRPOTrainer (`indus_reward`), which never meet the core.

Decisions the paper leaves open:

* Good parts are scored by the same rules as defective ones, "say nothing" being the right answer: no box
  gives R_loc = 1 and no type gives R_type = 1, a hallucinated box or name 0. A correct verdict is then worth
  the same on good and defective images, and a stray box on a good part is penalised rather than ignored.
* Ground truth that is unknown (a defective image without a mask or without a type name) scores 0 for every
  trajectory of that image: a constant within the GRPO group, so it moves no advantage.
* The confidence gain of a tool is measured at turn boundaries: P(correct verdict) when the answer is forced
  right after the tool's observation, minus the same probability after the previous observation (or, for
  the first tool, at the end of the prompt). `measured_tool_probes` turns such a sequence of the policy's
  P("yes") into the (before, after) pairs `tool_reward` scores; the GRPO trainer measures the sequence
  during its rollouts.
* Tool calls whose confidence gain was not measured (``None`` probe) pay their cost and earn nothing: the
  reward never credits a tool it cannot verify helped.
* The weights w_loc, w_type, w_tool are not stated in the paper; the defaults below are ours.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from calibration.metrics.defect_type import normalise_type
from calibration.metrics.localization import component_boxes
from station.protocol.parser import parse_turn
from station.protocol.turns import Answer, ParsedTurn, ParseError, ToolCall, ToolCalls, think_block
from station.verdict import Verdict
from tools.boxes import box_iou, px_to_rel
from tools.prior import Embedder, char_trigrams, minilm_encoder

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
ToolProbe = tuple[float, float]
"""(p_before, p_after): the policy's probability of the correct verdict before and after one observation."""

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


@dataclass
class RewardConfig:
    w_loc: float = field(default=0.5, metadata={"help": "Weight of the localization term R_loc (box IoU)."})
    w_type: float = field(
        default=0.5, metadata={"help": "Weight of the defect-type term R_type (semantic similarity)."}
    )
    w_tool: float = field(default=1.0, metadata={"help": "Weight of the tool-utility term R_tool."})
    alpha: float = field(
        default=0.3,
        metadata={
            "help": "R_tool bonus per tool call whose observation raised the policy's own P(correct verdict) "
            "(answer forced after the observation vs before it; paper: 0.3)."
        },
    )
    beta: float = field(
        default=0.1,
        metadata={
            "help": "R_tool cost of every tool call, measured or not, so tools must earn their keep "
            "(paper: 0.1)."
        },
    )
    format_penalty: float = field(
        default=-1.0,
        metadata={
            "help": "R_format of a broken trajectory: unparsable turn, no single final answer, bad tags."
        },
    )
    think_penalty: float = field(
        default=-0.5,
        metadata={"help": "R_format of an otherwise well-formed trajectory with a turn lacking <think>."},
    )
    embedder: Embedder = field(
        default="auto",
        metadata={
            "help": "Type similarity: 'minilm', 'lexical' (character n-grams), 'auto' (MiniLM if installed)."
        },
    )


@dataclass(frozen=True)
class GroundTruth:
    """What a trajectory is judged against. ``boxes`` are 0-1000 boxes of the mask's connected components;
    None means no mask is known (as opposed to an empty tuple: a mask without defect pixels)."""

    anomalous: bool
    defect_type: str | None = None
    boxes: tuple[Box, ...] | None = None


@dataclass(frozen=True)
class Episode:
    """The assistant turns of one trajectory, parsed once; ``tool_calls`` is how many tools were invoked."""

    texts: tuple[str, ...]
    turns: tuple[ParsedTurn, ...]
    tool_calls: int

    @classmethod
    def from_texts(cls, texts: Sequence[str], tool_calls: int | None = None) -> Episode:
        turns = tuple(parse_turn(t) for t in texts)
        if tool_calls is None:
            tool_calls = sum(len(t.calls) for t in turns if isinstance(t, ToolCalls))
        return cls(tuple(texts), turns, tool_calls)

    @property
    def answer(self) -> Answer | None:
        """The final answer: only a last turn counts, since an answer ends the episode."""
        last = self.turns[-1] if self.turns else None
        return last if isinstance(last, Answer) else None


@dataclass(frozen=True)
class RewardBreakdown:
    """Every term before the gate, and the total, so training can log each one per step."""

    format: float
    cls: float
    loc: float
    type: float
    tool: float
    total: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# ---- the terms ---------------------------------------------------------------------------------------------


def classification_reward(answer: Answer | None, truth: GroundTruth) -> float:
    return float(answer is not None and answer.anomaly == truth.anomalous)


def localization_reward(answer: Answer | None, truth: GroundTruth) -> float:
    """Best IoU over the ground-truth boxes: the model answers one box, an image may hold several defects.

    IoU on the 0-1000 grid equals IoU in pixels (both axes scale uniformly), so no image size is needed.
    """
    if answer is None:
        return 0.0
    if not truth.anomalous:
        return float(answer.bbox is None)
    if answer.bbox is None or not truth.boxes:
        return 0.0
    return max(box_iou(answer.bbox, gt) for gt in truth.boxes)


def gt_boxes_from_mask(mask: np.ndarray) -> tuple[Box, ...]:
    """0-1000 boxes of the mask's 8-connected components: the boxes the calibration metrics score against."""
    height, width = mask.shape[:2]
    return tuple(px_to_rel(box, width, height) for box in component_boxes(mask))


def type_reward(answer: Answer | None, truth: GroundTruth, embedder: Embedder = "auto") -> float:
    if answer is None:
        return 0.0
    if not truth.anomalous:
        return float(answer.type is None)
    if answer.type is None or not truth.defect_type:
        return 0.0
    return type_similarity(answer.type, truth.defect_type, embedder)


def type_similarity(a: str, b: str, embedder: Embedder = "auto") -> float:
    """1 for the same name up to case and separators (the metric's rule), else cosine similarity in [0, 1].

    Negative cosines are clipped: "unrelated" and "opposite" defect names deserve the same nothing.
    """
    if normalise_type(a) == normalise_type(b):
        return 1.0
    x, y = _words(a), _words(b)
    if embedder != "lexical":
        try:
            return _clip(float(_sentence_vector(x) @ _sentence_vector(y)))
        except ImportError as exc:
            if embedder == "minilm":
                raise
            log.info("defect-type similarity uses character n-grams: %s", exc)
    return _clip(_lexical_similarity(x, y))


def p_correct(p_yes: float, anomalous: bool) -> float:
    """P(correct verdict) from the policy's P("yes"), the probe a caller reads at the verdict token."""
    return p_yes if anomalous else 1.0 - p_yes


def tool_reward(probes: Sequence[ToolProbe | None], alpha: float = 0.3, beta: float = 0.1) -> float:
    """Sum over invoked tools of alpha * 1[gain > 0] - beta; a None probe (gain unmeasured) earns no bonus."""
    return sum((alpha if probe is not None and probe[1] - probe[0] > 0 else 0.0) - beta for probe in probes)


def measured_tool_probes(
    verdict_probs: Sequence[float | None] | None, anomalous: bool, tool_calls: int
) -> list[ToolProbe | None]:
    """One (before, after) P(correct) pair per invoked tool, from the policy's P("yes") at each turn boundary.

    ``verdict_probs`` is ``[q0, q1, ..., qm]``: q0 with the answer forced at the end of the prompt, qk right
    after the k-th tool observation, so tool k's probe is ``(pc(q(k-1)), pc(qk))`` with pc the probability of
    the label's verdict. Calls beyond the measured ones (a last turn whose calls were never run, because the
    rollout hit its tool or token budget) get None, as does a call next to an unreadable probability (None):
    both pay beta and earn nothing. Extra measurements beyond ``tool_calls`` (a call the loop ran but the
    protocol parser does not count) are dropped, since the reward can only score calls it counts.
    """
    correct = [None if q is None else p_correct(q, anomalous) for q in verdict_probs or ()]
    measured: list[ToolProbe | None] = [
        (before, after) if before is not None and after is not None else None
        for before, after in itertools.pairwise(correct)
    ][:tool_calls]
    return measured + [None] * (tool_calls - len(measured))


def confidence_gains(probes: Sequence[ToolProbe | None]) -> list[float]:
    """after - before of every measured probe: what training logs to show whether tools help the policy."""
    return [after - before for before, after in (p for p in probes if p is not None)]


def format_reward(episode: Episode, config: RewardConfig) -> float:
    """0 when well-formed; ``format_penalty`` when structure is broken; ``think_penalty`` when only reasoning
    is missing.

    Broken: no turns, a turn that does not parse, an answer that is not exactly one and last, or think tags
    that are unclosed, stray or nested. A turn without a think block still acts correctly, so it costs less
    than a broken one, but something: the prompt asks for reasoning and SFT taught it.
    """
    broken = (
        episode.answer is None
        or sum(isinstance(t, Answer) for t in episode.turns) != 1
        or any(isinstance(t, ParseError) for t in episode.turns)
        or any(re.search(r"</?think>", _THINK.sub("", text)) for text in episode.texts)
    )
    if broken:
        return config.format_penalty
    if not all(_THINK.search(text) for text in episode.texts):
        return config.think_penalty
    return 0.0


def total_reward(
    episode: Episode,
    truth: GroundTruth,
    probes: Sequence[ToolProbe | None] | None = None,
    config: RewardConfig | None = None,
) -> RewardBreakdown:
    """The composite reward. ``probes``: one per invoked tool, in call order; None when none was measured."""
    config = config or RewardConfig()
    if probes is None:
        probes = [None] * episode.tool_calls
    if len(probes) != episode.tool_calls:
        raise ValueError(f"{len(probes)} tool probes for {episode.tool_calls} tool calls")
    answer = episode.answer
    r_format = format_reward(episode, config)
    r_cls = classification_reward(answer, truth)
    r_loc = localization_reward(answer, truth)
    r_type = type_reward(answer, truth, config.embedder)
    r_tool = tool_reward(probes, config.alpha, config.beta)
    total = r_format + r_cls * (1 + config.w_loc * r_loc + config.w_type * r_type + config.w_tool * r_tool)
    return RewardBreakdown(r_format, r_cls, r_loc, r_type, r_tool, total)


# ---- adapters ----------------------------------------------------------------------------------------------


def reward_from_verdict(
    verdict: Verdict,
    truth: GroundTruth,
    probes: Sequence[ToolProbe | None] | None = None,
    config: RewardConfig | None = None,
) -> RewardBreakdown:
    """Reward of a station episode: its trace's round texts, and the tools the loop actually ran."""
    episode = Episode.from_texts(
        [r.text for r in verdict.trace], tool_calls=sum(len(r.tool_calls) for r in verdict.trace)
    )
    return total_reward(episode, truth, probes, config)


def completion_texts(completion: str | Sequence[dict[str, Any]]) -> list[str]:
    """The assistant turns of a TRL completion, as the model wrote them.

    A plain string is one turn. A conversation is TRL's tool loop output: assistant messages whose response
    parser may have split the think block into ``reasoning_content`` (or ``thinking``) and the calls into
    structured ``tool_calls``; they are rendered back to the protocol's text so one parser judges every
    source. Tool messages are observations, not the policy's output, and are skipped.
    """
    if isinstance(completion, str):
        return [completion]
    return [_message_text(m) for m in completion if m.get("role") == "assistant"]


def indus_reward(
    completions: Sequence[str | Sequence[dict[str, Any]]],
    anomalous: Sequence[Any],
    defect_type: Sequence[str | None] | None = None,
    gt_boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    tool_probes: Sequence[Sequence[ToolProbe | None] | None] | None = None,
    verdict_probs: Sequence[Sequence[float | None] | None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    config: RewardConfig | None = None,
    **_: Any,
) -> list[float]:
    """TRL GRPOTrainer reward function: one total per completion.

    TRL passes every dataset column as a keyword list aligned with ``completions``: ``anomalous`` (bool, 0/1,
    "good"/"defective" or "no"/"yes"), ``defect_type`` and ``gt_boxes`` (0-1000 boxes) are read from there.
    The tools' confidence gains come either as ready ``tool_probes`` pairs or, as the GRPO trainer measures
    them without knowing the label, as ``verdict_probs`` (per rollout the policy's P("yes") at the prompt's
    end and after each observation, see `measured_tool_probes`); never both. Each term's batch mean goes to
    ``log_metric`` as ``reward/<term>``, and, when any tool call was measured, the mean confidence gain and
    the share of measured calls with a positive gain as ``tools/confidence_gain`` and
    ``tools/positive_gain_share``. Bind a non-default config with ``functools.partial(indus_reward,
    config=...)``, which TRL names and pickles like the function itself.
    """
    count = len(completions)
    if tool_probes is not None and verdict_probs is not None:
        raise ValueError("pass tool_probes or verdict_probs, not both")
    types = defect_type if defect_type is not None else [None] * count
    boxes = gt_boxes if gt_boxes is not None else [None] * count
    episodes = [Episode.from_texts(completion_texts(c)) for c in completions]
    truths = [
        GroundTruth(_as_anomalous(label), kind, _as_boxes(box))
        for label, kind, box in zip(anomalous, types, boxes, strict=True)
    ]
    if verdict_probs is not None:
        probes: Sequence[Sequence[ToolProbe | None] | None] = [
            measured_tool_probes(qs, truth.anomalous, episode.tool_calls)
            for qs, truth, episode in zip(verdict_probs, truths, episodes, strict=True)
        ]
    else:
        probes = tool_probes if tool_probes is not None else [None] * count
    breakdowns = [
        total_reward(episode, truth, probe, config)
        for episode, truth, probe in zip(episodes, truths, probes, strict=True)
    ]
    if log_metric is not None and breakdowns:
        for term in ("format", "cls", "loc", "type", "tool"):
            log_metric(f"reward/{term}", sum(getattr(b, term) for b in breakdowns) / count)
        gains = [g for probe in probes if probe is not None for g in confidence_gains(probe)]
        if gains:
            log_metric("tools/confidence_gain", sum(gains) / len(gains))
            log_metric("tools/positive_gain_share", sum(g > 0 for g in gains) / len(gains))
    return [b.total for b in breakdowns]


# ---- helpers -----------------------------------------------------------------------------------------------


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if not isinstance(content, str):  # multimodal content blocks
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    reasoning = message.get("reasoning_content") or message.get("thinking")
    parts = [think_block(reasoning)] if reasoning else []
    if content:
        parts.append(content)
    parts.extend(_call_text(call) for call in message.get("tool_calls") or [])
    return "\n".join(parts)


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(name=str(function.get("name", "")), arguments={}, raw_arguments=raw).text


_LABELS = {"good": False, "no": False, "defective": True, "yes": True}


def _as_anomalous(label: Any) -> bool:
    if isinstance(label, str) and label.strip().lower() in _LABELS:
        return _LABELS[label.strip().lower()]
    if isinstance(label, (bool, int, np.bool_, np.integer)) and label in (0, 1):
        return bool(label)
    raise ValueError(f"label {label!r} is not a good/defective ground truth")


def _as_boxes(boxes: Sequence[Sequence[float]] | None) -> tuple[Box, ...] | None:
    return None if boxes is None else tuple(tuple(float(v) for v in box) for box in boxes)


def _words(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text).strip().lower()


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


@functools.lru_cache(maxsize=4096)
def _sentence_vector(text: str) -> np.ndarray:
    """Defect names repeat across a GRPO group and across steps, so each is encoded once."""
    return np.asarray(minilm_encoder().encode([text], normalize_embeddings=True, show_progress_bar=False)[0])


def _lexical_similarity(a: str, b: str) -> float:
    """Cosine of character-trigram counts: 'scratch' ~ 'scratches' without any model."""
    x, y = char_trigrams(a), char_trigrams(b)
    dot = sum(count * y[gram] for gram, count in x.items())
    norm = math.sqrt(sum(v * v for v in x.values()) * sum(v * v for v in y.values()))
    return dot / norm if norm else 0.0
