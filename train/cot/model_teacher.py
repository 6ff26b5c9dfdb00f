"""The model teacher: a large model writes Indus-CoT trajectories through the station's own agent loop.

IndusAgent distils its trajectories from a large teacher model that sees only the query image and the
inspection request: no reference image, and no ground-truth box while the tools run (a crop without a box
falls back to the unsupervised proposal, as the crop tool does at inspection time). `ModelTeacher` drives
any station `Backend` (an ``openai`` endpoint serving the big model, or a local ``hf`` / ``onnx`` one) with
`station.agent.Agent`, so a kept trajectory is the conversation the station itself held: the same system
prompt and tool schemas, every assistant turn as `parse_turn` read it, every observation the real tool's
output on the real image. Nothing is re-rendered by hand, so there is nothing that could drift from what
the station parses.

Curation is automatic and per attempt:

* **format and tool validity**: a fail-safe (unparseable turn, cut-off turn, failed tool call, too many
  calls, deadline, backend error) rejects the attempt; the teacher runs with ``max_tool_errors=0``
  because a trajectory with a failed call is never kept, so there is no point letting it go on;
* **agreement with the label**: the verdict must match, and so must the stated confidence (the
  probability of a defect: at least 0.5 for a defect, below for a good part, or the station's decision
  would contradict the answer); a defective part's type must name the label's defect (after the
  metric's normalisation, or above ``min_type_similarity``; the stored answer then uses the dataset's
  spelling, so a set speaks one vocabulary) and its box must touch the mask; a good part must answer
  without a type or a box;
* **self-correction**: a rejected attempt is retried up to ``retries`` times. With ``hints="feedback"``
  the retry's inspection request carries a short note on what went wrong (the parse error, the failing
  tool, "the verdict was wrong"); with ``hints="label"`` it states the label (STaR-style
  rationalisation: good or defective and the defect's name); with ``"none"`` a retry is a plain
  resample (useful only with sampling). A hint never names a box or a location. **The hint is never
  stored**: the kept trajectory's user turn is the station's own request, byte for byte, because a model
  trained on hinted prompts would learn to expect a hint the station never gives; an attempt whose
  reasoning talks about the hint is rejected (``hint_echo``), since it would not make sense without it;
* **LLM-as-judge** (optional): a second backend scores each candidate 1-10 on a rubric (evidence-grounded
  reasoning, sensible tool use, consistency with the answer); the best-scored candidate is kept, and one
  below ``min_judge_score`` is rejected like a wrong answer. A judge that fails or answers garbage never
  stops the build: its candidate stays, unscored, and the failure is recorded.

Every attempt is recorded in `last_outcome` (attempts, rejection codes, hints, judge scores), which
`build_trajectories` reports per sample.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
import time
from typing import Literal

import numpy as np

from calibration.datasets.base import Sample
from calibration.metrics.defect_type import normalise_type
from calibration.metrics.localization import component_boxes
from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends.base import Backend, BackendError, Generation, Session
from station.protocol import Answer, ToolCall, ToolCalls, opening_messages, parse_turn
from station.protocol.prompt import DEFAULT_INSTRUCTION
from station.verdict import Verdict
from tools.boxes import box_iou, rel_to_px
from tools.prior import PriorStore
from tools.registry import ToolRegistry
from tools.toolkit import default_registry
from train.cot.dataset import CurationError, check_trajectory
from train.cot.teacher import Attempt, SampleOutcome, Teacher

log = logging.getLogger(__name__)

HintMode = Literal["none", "feedback", "label"]
HINT_MODES: tuple[HintMode, ...] = ("none", "feedback", "label")

# Rejection codes beyond the agent's fail-safe reasons (parse_error, token_limit, tool_error, ...).
WRONG_VERDICT = "wrong_verdict"
WRONG_TYPE = "wrong_type"
BOX_MISS = "box_miss"
FIELDS_ON_GOOD = "fields_on_good"
CONFIDENCE_DISAGREES = "confidence_disagrees"
HINT_ECHO = "hint_echo"
INVALID = "invalid"
JUDGE_LOW = "judge_low"

# Phrases of our hints that must not surface in a stored trajectory's reasoning.
_HINT_MARKERS = (
    "previous attempt",
    "previous inspection",
    "known to be",
    "this hint",
    "the hint",
    "the note",
)

_FEEDBACK = {
    "parse_error": "Your previous reply could not be read ({detail}). Write your reasoning inside "
    "<think>...</think>, then either tool calls or exactly one <answer>{{...}}</answer> with the fields "
    "in the stated order.",
    "token_limit": "Your previous reply was cut off before it ended. Keep the reasoning short and finish "
    "every turn with a tool call or the answer.",
    "tool_error": "A tool call failed in a previous attempt ({detail}). Use only the listed tools, with "
    "arguments that follow their schemas.",
    "tool_limit": "A previous attempt called too many tools. Call at most {max_tool_calls} tools, then "
    "answer.",
    "deadline": "A previous attempt took too long. Be brief and call only the tools that can change your "
    "decision.",
    WRONG_VERDICT: "A previous inspection of this image reached the wrong verdict. Look again carefully, "
    "using the tools where they help, before you decide.",
    WRONG_TYPE: "A previous inspection named the defect type inaccurately. Name the kind of defect "
    "precisely, in a word or two.",
    BOX_MISS: "A previous inspection put the defect's box where the defect is not. Locate the defect "
    "carefully, zooming in with crop where needed, and box exactly that region.",
    FIELDS_ON_GOOD: "A previous inspection named a defect type or a box for a part it judged good. A good "
    'part\'s answer has "type": null and "bbox": null.',
    CONFIDENCE_DISAGREES: 'A previous answer stated a "confidence" on the wrong side of its own verdict. '
    '"confidence" is the probability that the part is defective: high for a defect, low for a good part.',
    HINT_ECHO: "Reason only from what you see in the image and in the tools' results.",
    INVALID: "A previous reply broke the answer format. Follow the answer format exactly.",
    JUDGE_LOW: "Ground every statement in what the image or the tools' results show, and call a tool only "
    "when it can change your decision.",
}

JUDGE_TIMEOUT_S = 120.0
JUDGE_PROMPT = """\
You review the work of an industrial visual inspector. You are given the part's image, its known label, \
and the inspector's transcript: its reasoning, the tools it called, what the tools returned (text and \
images), and its final answer. The final answer is already known to agree with the label; judge how it \
got there.
Score the transcript from 1 (worthless as a training example) to 10 (exemplary) on:
- evidence: every claim is grounded in what the image or a tool's result actually shows; nothing is \
invented (no measurement, detail or region the evidence does not contain);
- tool use: tools are called when they can change the decision, on sensible regions, and their results \
are read and used; no needless or repeated calls;
- consistency: the reasoning leads to the answer, and a defect's box encloses the region the reasoning \
points to;
- clarity: concise, without repetition or filler.
Reply with only a JSON object: {"score": <integer from 1 to 10>, "reason": "<one sentence>"}"""

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_NUMBER = r"([+-]?\d+(?:\.\d+)?)"
_SCORE_WORD = re.compile(r"\bscore\b\W{0,4}(?:is|of|=|:)?\W{0,4}" + _NUMBER + r"(?:\s*/\s*10\b)?", re.I)
_OUT_OF_TEN = re.compile(_NUMBER + r"\s*(?:/|out of)\s*10\b", re.I)


class TeacherUnavailable(BackendError):
    """The teacher's backend failed attempt after attempt (server down, model not loaded): the build stops
    instead of dropping every sample of the data set one by one."""


class TeacherRejected(CurationError):
    """No attempt at a sample survived curation; ``outcome`` says what each attempt did."""

    def __init__(self, outcome: SampleOutcome):
        attempts = len(outcome.attempts)
        super().__init__(f"no trajectory kept after {attempts} attempt(s): {_codes(outcome)}")
        self.outcome = outcome


# -- the judge -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JudgeResult:
    """A judge's reply: the score when one could be read, its text, and the error when it failed."""

    score: float | None
    text: str = ""
    error: str | None = None


def parse_score(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The score in a judge's reply, wherever the judge put it; None when there is none in [low, high].

    Judges ignore formats: they wrap the JSON in prose or a code fence, think aloud first (numbers in a
    think block are not the score), write "Score: 7/10" or "8 out of 10", or just "7". Preference goes
    to the last JSON object with a numeric ``score``, then to the last "score ... N", then "N/10", then a
    reply that is a number and nothing else.
    """
    if not isinstance(text, str):
        return None
    body = _THINK.sub(" ", text)
    if "</think>" in body:  # a reasoning parser took the opening tag
        body = body.rsplit("</think>", 1)[1]
    elif "<think>" in body:  # cut off while thinking: no verdict yet
        body = body.split("<think>", 1)[0]

    def valid(value: object) -> float | None:
        if isinstance(value, bool):
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) and low <= number <= high else None

    for candidate in reversed(_JSON_OBJECT.findall(body)):
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict):
            score = next((v for k, v in obj.items() if str(k).strip().lower() == "score"), None)
            if valid(score) is not None:
                return valid(score)
    for pattern in (_SCORE_WORD, _OUT_OF_TEN):
        for match in reversed(list(pattern.finditer(body))):
            if valid(match.group(1)) is not None:
                return valid(match.group(1))
    return valid(body.strip().strip("*`'\". "))


class Judge:
    """LLM-as-judge: a backend that scores a candidate trajectory on `JUDGE_PROMPT`'s rubric.

    It sees the query image, the label and the whole transcript with the tools' images, because whether a
    claim is grounded can only be told from the evidence the inspector had. It never raises: any failure
    (backend error, timeout, no score in the reply) comes back as a `JudgeResult` without a score.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        rubric: str = JUDGE_PROMPT,
        max_new_tokens: int = 512,
        timeout_s: float = JUDGE_TIMEOUT_S,
    ):
        self.backend = backend
        self.rubric = rubric
        self.max_new_tokens = max_new_tokens
        self.timeout_s = timeout_s

    def messages(self, sample: Sample, trajectory: list[dict]) -> list[dict]:
        """The judge's conversation: the rubric, then the image, the label and the transcript."""
        label = f"defective ({sample.defect})" if sample.label else "good (no defect)"
        content: list[dict] = [
            {"type": "image", "image": _first_image(trajectory)},
            {"type": "text", "text": f"Product: {sample.category}. Label: {label}.\nTranscript:"},
        ]
        round_number = 0
        for message in trajectory[2:]:
            if message["role"] == "assistant":
                round_number += 1
                turn = f"\n[inspector, turn {round_number}]\n{_text(message)}"
                content.append({"type": "text", "text": turn})
            elif message["role"] == "tool":
                parts = message["content"]
                content.append({"type": "text", "text": f"\n[result of {message.get('name', 'tool')}]"})
                content.extend(parts)
        return [{"role": "system", "content": self.rubric}, {"role": "user", "content": content}]

    def score(self, sample: Sample, trajectory: list[dict]) -> JudgeResult:
        try:
            messages = self.messages(sample, trajectory)
            session: Session = self.backend.open_session([])
            try:
                generation = session.generate(
                    messages,
                    max_new_tokens=self.max_new_tokens,
                    deadline=time.monotonic() + self.timeout_s,
                )
            finally:
                session.close()
        except Exception as exc:  # a judge must never stop the build
            return JudgeResult(None, error=f"{type(exc).__name__}: {exc}")
        if not isinstance(generation, Generation) or not isinstance(generation.text, str):
            return JudgeResult(None, error=f"the judge returned {type(generation).__name__}")
        score = parse_score(generation.text)
        error = None if score is not None else f"no score in the reply: {generation.text[:120]!r}"
        return JudgeResult(score, generation.text, error)


def _first_image(messages: list[dict]) -> np.ndarray:
    return next(p["image"] for p in messages[1]["content"] if p["type"] == "image")


def _text(message: dict) -> str:
    """An assistant message as the model wrote it (think block, then tool calls or the answer)."""
    calls = message.get("tool_calls")
    if not calls:
        return message["content"]
    turn = ToolCalls(
        calls=tuple(
            ToolCall(f["name"], json.loads(f["arguments"]), raw_arguments=f["arguments"])
            for f in (c["function"] for c in calls)
        ),
        content=message["content"],
    )
    return turn.text


# -- recording what the agent loop said ----------------------------------------------------------------


class _RecordingSession(Session):
    """Passes every call through and keeps the conversation of the latest round, which is the whole
    conversation up to the final answer once the loop has finished."""

    def __init__(self, inner: Session):
        self.inner = inner
        self.messages: list[dict] = []

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        self.messages = list(messages)
        return self.inner.generate(messages, max_new_tokens=max_new_tokens, deadline=deadline)

    def close(self) -> None:
        self.inner.close()


class _RecordingBackend(Backend):
    """The teacher's backend as the agent sees it: unchanged, except that its sessions are recorded."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()
        self.latest: _RecordingSession | None = None
        self.tools: list[dict] | None = None

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def open_session(self, tools: list[dict]) -> Session:
        session = _RecordingSession(self.inner.open_session(tools))
        with self._lock:
            self.latest, self.tools = session, tools
        return session

    def take(self) -> _RecordingSession | None:
        with self._lock:
            session, self.latest = self.latest, None
        return session


# -- the teacher ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Candidate:
    attempt: Attempt
    messages: list[dict]


class ModelTeacher(Teacher):
    """Trajectories written by a model through the station's agent loop, curated, retried and judged.

    ``backend`` is any station backend; the teacher does not own it (nor ``judge``'s), so the caller
    closes them. ``config`` holds the inspection limits (a large model needs a longer ``deadline_s``
    than the edge default; its ``instruction`` is the station's request, the default one unless the
    station runs with its own); ``max_tool_errors`` is forced to 0. A retry's request is that request
    plus the hint; the stored one is always the request alone. ``candidates`` is how many curated
    trajectories to collect per sample for the judge to choose from (more than one only makes sense with
    sampling); ``retries`` how many rejected attempts a sample may cost before it is dropped. ``rng`` is
    not used: the backend's own decoding decides what the teacher writes.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        judge: Judge | None = None,
        config: AgentConfig | None = None,
        registry: ToolRegistry | None = None,
        priors: PriorStore | None = None,
        retries: int = 2,
        candidates: int = 1,
        hints: HintMode = "feedback",
        min_judge_score: float | None = None,
        min_type_similarity: float = 1.0,
        require_box_hit: bool = True,
        min_box_iou: float = 0.0,
        max_backend_errors: int = 5,
    ):
        if retries < 0 or candidates < 1 or max_backend_errors < 1:
            raise ValueError("retries must be >= 0, candidates and max_backend_errors >= 1")
        if hints not in HINT_MODES:
            raise ValueError(f"hints must be one of {', '.join(HINT_MODES)}, got {hints!r}")
        if not 0 <= min_type_similarity <= 1 or not 0 <= min_box_iou <= 1:
            raise ValueError("min_type_similarity and min_box_iou must lie in [0, 1]")
        self.backend = backend
        self.judge = judge
        self.config = (config or AgentConfig(deadline_s=120.0, max_new_tokens=1024)).model_copy(
            update={"max_tool_errors": 0}
        )
        self.registry = registry or default_registry()
        self.priors = priors if priors is not None else PriorStore.default(embedder="lexical")
        self.retries = retries
        self.candidates = candidates
        self.hints: HintMode = hints
        self.min_judge_score = min_judge_score
        self.min_type_similarity = min_type_similarity
        self.require_box_hit = require_box_hit
        self.min_box_iou = min_box_iou
        self.max_backend_errors = max_backend_errors
        self._recorder = _RecordingBackend(backend)
        self._agent = Agent(self._recorder, self.config, registry=self.registry, priors=self.priors)
        self._backend_errors = 0

    @property
    def tools(self) -> list[dict]:
        return self.registry.schemas()

    def describe(self) -> dict:
        return {
            "kind": "model",
            "model": self.backend.model_id,
            "judge": self.judge.backend.model_id if self.judge else None,
            "retries": self.retries,
            "candidates": self.candidates,
            "hints": self.hints,
            "min_judge_score": self.min_judge_score,
        }

    def close(self) -> None:
        """Stop the agent's model thread (the backends stay open: they belong to the caller)."""
        self._agent.close()

    def __enter__(self) -> ModelTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def trajectory(self, sample: Sample, rng: np.random.Generator) -> list[dict]:
        image = sample.load_image()
        mask = sample.load_mask() if sample.label else None
        outcome = SampleOutcome(source=sample.key, label=int(bool(sample.label)), defect=sample.defect)
        self.last_outcome = outcome
        kept: list[_Candidate] = []
        failures = 0
        hint: str | None = None
        while len(kept) < self.candidates and failures <= self.retries:
            candidate = self._attempt(sample, image, mask, len(outcome.attempts) + 1, hint)
            outcome.attempts.append(candidate.attempt)
            if candidate.attempt.kept:
                kept.append(candidate)
                hint = None
            else:
                failures += 1
                hint = self._hint(sample, candidate.attempt)
        if not kept:
            log.info(
                "%s: dropped after %d attempt(s): %s", sample.key, len(outcome.attempts), _codes(outcome)
            )
            raise TeacherRejected(outcome)
        # The best judged candidate; unscored ones (no judge, or it failed) rank below any score, and the
        # earliest wins a tie, so without a judge the first curated attempt is kept.
        best = max(kept, key=lambda c: -math.inf if c.attempt.judge_score is None else c.attempt.judge_score)
        outcome.chosen = best.attempt.number
        log.info(
            "%s: kept attempt %d of %d (judge %s)%s",
            sample.key,
            outcome.chosen,
            len(outcome.attempts),
            best.attempt.judge_score,
            f"; rejected: {_codes(outcome)}" if failures else "",
        )
        return best.messages

    # -- one attempt ---------------------------------------------------------------------------------

    def _attempt(
        self, sample: Sample, image: np.ndarray, mask: np.ndarray | None, number: int, hint: str | None
    ) -> _Candidate:
        attempt = Attempt(number=number, kept=False, hint=hint)
        request = self.config.instruction or DEFAULT_INSTRUCTION
        instruction = f"{request} {hint}" if hint else self.config.instruction
        start = time.perf_counter()
        self._recorder.take()
        verdict = self._agent.inspect(
            image,
            sample.category,
            part_id=sample.key,
            config=self.config.model_copy(update={"instruction": instruction}),
        )
        session = self._recorder.take()
        attempt.seconds = time.perf_counter() - start
        attempt.tool_calls = verdict.tool_calls
        self._count_backend_error(verdict)
        messages: list[dict] = []
        try:
            if verdict.fail_safe:
                raise _Reject(verdict.reason or "internal_error", verdict.detail or "")
            messages = self._conversation(sample, verdict, session)
            self._curate(sample, mask, messages, hint)
        except _Reject as reject:
            attempt.code, attempt.detail = reject.code, reject.detail
            return _Candidate(attempt, messages)
        if self.judge is not None:
            judged = self.judge.score(sample, messages)
            attempt.judge_score, attempt.judge_error = judged.score, judged.error
            if (
                self.min_judge_score is not None
                and judged.score is not None
                and judged.score < self.min_judge_score
            ):
                attempt.code = JUDGE_LOW
                attempt.detail = f"judge score {judged.score:g} < {self.min_judge_score:g}"
                return _Candidate(attempt, messages)
        attempt.kept = True
        return _Candidate(attempt, messages)

    def _count_backend_error(self, verdict: Verdict) -> None:
        if verdict.reason != "backend_error":
            self._backend_errors = 0
            return
        self._backend_errors += 1
        if self._backend_errors >= self.max_backend_errors:
            raise TeacherUnavailable(
                f"the teacher {self.backend.model_id} failed {self._backend_errors} attempts in a row: "
                f"{verdict.detail}"
            )

    def _conversation(
        self, sample: Sample, verdict: Verdict, session: _RecordingSession | None
    ) -> list[dict]:
        """The conversation the agent held, with the station's own request in place of any hint, and the
        answer named in the dataset's vocabulary when the teacher's name for the defect agrees with it."""
        if session is None or not session.messages:
            raise _Reject("internal_error", "the agent answered without a recorded model round")
        answer = parse_turn(verdict.trace[-1].text)
        if not isinstance(answer, Answer):  # the agent only answers with an Answer; guard the invariant
            raise _Reject(INVALID, f"the last turn parses as {answer!r}")
        held = session.messages
        if sum(m["role"] == "assistant" for m in held) != len(verdict.trace) - 1:
            raise _Reject("internal_error", "the recorded conversation does not match the agent's rounds")
        named = sample.label and answer.anomaly and answer.type is not None
        if named and self._same_type(answer.type, sample.defect):
            answer = dataclasses.replace(answer, type=sample.defect)
        frame = _first_image(held)
        opening = opening_messages(frame, sample.category, self.config.instruction)
        return [*opening, *held[2:], answer.message()]

    def _same_type(self, answered: str, label: str) -> bool:
        if normalise_type(answered) == normalise_type(label):
            return True
        if self.min_type_similarity >= 1:
            return False
        from train.rewards import type_similarity  # the reward's own rule; its embedder loads lazily

        return type_similarity(answered, label) >= self.min_type_similarity

    def _curate(
        self, sample: Sample, mask: np.ndarray | None, messages: list[dict], hint: str | None
    ) -> None:
        answer = parse_turn(messages[-1]["content"])
        assert isinstance(answer, Answer)  # built from one in _conversation
        if answer.anomaly != bool(sample.label):
            said = "defective" if answer.anomaly else "good"
            raise _Reject(WRONG_VERDICT, f"answered {said}, labelled {sample.defect}")
        if not sample.label and (answer.bbox is not None or answer.type is not None):
            raise _Reject(FIELDS_ON_GOOD, f"a good part answered with {answer.payload()}")
        if answer.confidence is not None and (answer.confidence >= 0.5) != answer.anomaly:
            raise _Reject(
                CONFIDENCE_DISAGREES, f"anomaly {answer.anomaly} with confidence {answer.confidence}"
            )
        if sample.label and answer.type != sample.defect:
            raise _Reject(WRONG_TYPE, f"answered type {answer.type!r}, labelled {sample.defect!r}")
        if sample.label and mask is not None and mask.any() and self.require_box_hit:
            self._check_box(answer, mask)
        if hint is not None:
            reasoning = " ".join(_text(m) for m in messages if m["role"] == "assistant").lower()
            echoed = next((marker for marker in _HINT_MARKERS if marker in reasoning), None)
            if echoed is not None:
                raise _Reject(HINT_ECHO, f"the reasoning refers to the correction hint ({echoed!r})")
        try:
            check_trajectory(messages, sample)
        except CurationError as error:
            raise _Reject(INVALID, str(error)) from error

    def _check_box(self, answer: Answer, mask: np.ndarray) -> None:
        if answer.bbox is None:
            raise _Reject(BOX_MISS, "a defective part answered without a box")
        height, width = mask.shape[:2]
        x1, y1, x2, y2 = rel_to_px(answer.bbox, width, height)
        if not mask[y1:y2, x1:x2].any():
            raise _Reject(BOX_MISS, f"the box {list(answer.bbox)} holds no defect pixel")
        if self.min_box_iou > 0:
            iou = max(box_iou((x1, y1, x2, y2), gt) for gt in component_boxes(mask))
            if iou < self.min_box_iou:
                raise _Reject(BOX_MISS, f"the box {list(answer.bbox)} has IoU {iou:.2f} < {self.min_box_iou}")

    def _hint(self, sample: Sample, attempt: Attempt) -> str | None:
        """The note the next attempt's request carries: never a box, a location or a coordinate."""
        if self.hints == "none" or attempt.code in ("backend_error", "internal_error", None):
            return None
        detail = re.sub(r"\[[^\]]*\]", "[...]", attempt.detail or "")[:160]  # no coordinates, ever
        feedback = _FEEDBACK.get(attempt.code, _FEEDBACK[INVALID])
        feedback = feedback.format(detail=detail, max_tool_calls=self.config.max_tool_calls)
        if self.hints == "label":
            known = (
                f"This part is known to be defective ({sample.defect.replace('_', ' ')}); find the visual "
                "evidence for it."
                if sample.label
                else "This part is known to be free of defects; check that the evidence agrees."
            )
            return f"Note: {known} {feedback}"
        return f"Note: {feedback}"


def _codes(outcome: SampleOutcome) -> str:
    return ", ".join(a.code for a in outcome.attempts if a.code) or "-"


class _Reject(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
