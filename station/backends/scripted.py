"""The `scripted` backend: a deterministic stand-in for the model.

It replays assistant turns from a script (or a recorded verdict trace), so everything around the model can
be tested and benchmarked without one, and it injects the faults a real model or server produces: garbage,
malformed or unknown tool calls, invalid boxes, endless tool calls, errors, and answers slower than the
deadline. It never looks at the image.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from station.backends.base import Backend, BackendError, FinishReason, Generation, Session
from station.protocol.turns import Answer, ToolCall, ToolCalls, think_block

# Canonical turns, written by the protocol's own types so they are exactly what a trained model writes.
ANSWER_GOOD = Answer(
    anomaly=False, confidence=0.1, content=think_block("The part matches its normalcy prior.")
).text
ANSWER_DEFECT = Answer(
    anomaly=True,
    type="crack",
    bbox=(400, 400, 600, 600),
    confidence=0.9,
    content=think_block("A crack runs across the centre."),
).text
CROP_CALL = ToolCalls(
    calls=(ToolCall("crop", {"bbox": [250, 250, 750, 750]}),), content=think_block("Zoom into the centre.")
).text
INVALID_BOX_ANSWER = ANSWER_DEFECT.replace("[400, 400, 600, 600]", "[700, 10, 300, 2000]")
INVALID_BOX_ENHANCE = ToolCalls(
    calls=(ToolCall("enhance", {"mode": "edges", "bbox": [900, 900, 100, 100]}),)
).text


@dataclass(frozen=True)
class ScriptedTurn:
    """One assistant turn to play, and how to misbehave while playing it."""

    text: str = ""
    delay_s: float = 0.0  # sleep before answering: a slow model
    error: str | None = None  # raise BackendError(error) instead of answering
    finish_reason: FinishReason = "stop"
    verdict_prob: float | None = None  # as if read from logits

    @classmethod
    def coerce(cls, value: object) -> ScriptedTurn:
        if isinstance(value, ScriptedTurn):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown turn keys: {', '.join(sorted(unknown))}")
            return cls(**value)
        raise ValueError(f"a turn is a string or a mapping, not {type(value).__name__}")


# Named faults for tests, benchmarks and `indus inspect --backend scripted --model fault:<name>`.
FAULTS: dict[str, tuple[list[ScriptedTurn], bool]] = {
    "garbage": ([ScriptedTurn("}}{{ <tool_c all> lorem ipsum \x00\ufffd")], False),
    "malformed_tool_call": (
        [ScriptedTurn('<tool_call>\n{"name": "crop", "arguments": {"bbox": [1, 2,\n</tool_call>')],
        False,
    ),
    "unknown_tool": ([ScriptedTurn('<tool_call>\n{"name": "xray", "arguments": {}}\n</tool_call>')], True),
    "invalid_box": (
        [ScriptedTurn(INVALID_BOX_ANSWER)],
        False,
    ),
    "invalid_tool_box": ([ScriptedTurn(INVALID_BOX_ENHANCE)], True),
    "endless_tool_calls": ([ScriptedTurn(CROP_CALL)], True),
    "truncated": ([ScriptedTurn("<think>\nThe left edge looks", finish_reason="length")], False),
    "raise": ([ScriptedTurn(error="CUDA out of memory (injected)")], False),
    "slow": ([ScriptedTurn(ANSWER_GOOD, delay_s=30.0)], False),
}


class ScriptedSession(Session):
    def __init__(self, backend: ScriptedBackend):
        self._backend = backend
        self._round = 0
        self._closed = threading.Event()

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        turn = self._backend.turn(self._round, messages)
        self._round += 1
        start = time.perf_counter()
        if turn.delay_s:
            # Interruptible: closing the session ends the wait, so a "hung" model does not leak forever.
            self._closed.wait(turn.delay_s)
        if turn.error is not None:
            raise BackendError(turn.error)
        words = len(turn.text.split())
        return Generation(
            text=turn.text,
            prefill_tokens=0,
            generated_tokens=min(words, max_new_tokens),
            decode_s=time.perf_counter() - start,
            finish_reason=turn.finish_reason,
            verdict_prob=turn.verdict_prob,
        )

    def close(self) -> None:
        self._closed.set()


class ScriptedBackend(Backend):
    """Plays ``turns`` in order in every session (or asks ``policy`` for each turn).

    With ``repeat_last`` the last turn repeats forever (endless tool calls); otherwise running past the end
    of the script is a backend error.
    """

    name = "scripted"

    def __init__(
        self,
        turns: Sequence[ScriptedTurn | str | dict] = (),
        *,
        policy: Callable[[int, list[dict]], ScriptedTurn | str] | None = None,
        repeat_last: bool = False,
        label: str = "script",
    ):
        if not turns and policy is None:
            raise ValueError("a scripted backend needs turns or a policy")
        self._turns = [ScriptedTurn.coerce(t) for t in turns]
        self._policy = policy
        self._repeat_last = repeat_last
        self._label = label

    @property
    def model_id(self) -> str:
        return f"scripted:{self._label}"

    def open_session(self, tools: list[dict]) -> Session:
        return ScriptedSession(self)

    def turn(self, index: int, messages: list[dict]) -> ScriptedTurn:
        if self._policy is not None:
            return ScriptedTurn.coerce(self._policy(index, messages))
        if index < len(self._turns):
            return self._turns[index]
        if self._repeat_last:
            return self._turns[-1]
        raise BackendError(
            f"script {self._label!r} has only {len(self._turns)} turns; round {index + 1} asked"
        )

    @classmethod
    def fault(cls, name: str) -> ScriptedBackend:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        turns, repeat = FAULTS[name]
        return cls(turns, repeat_last=repeat, label=f"fault:{name}")

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedBackend:
        """Load a script: YAML/JSON ``{"turns": [...], "repeat_last": bool}`` or a list of turns, or a
        recorded verdict (its trace's model turns are replayed)."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read script {path}: {exc}") from exc
        repeat = False
        if isinstance(data, dict) and "trace" in data:
            turns = [r["text"] for r in data["trace"]]
        elif isinstance(data, dict) and "turns" in data:
            turns, repeat = data["turns"], bool(data.get("repeat_last", False))
        elif isinstance(data, list):
            turns = data
        else:
            raise ValueError(
                f"{path}: expected a list of turns, a mapping with 'turns', or a verdict with 'trace'"
            )
        try:
            return cls(turns, repeat_last=repeat, label=path.name)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def from_spec(cls, spec: str) -> ScriptedBackend:
        """``fault:<name>``, ``answer:good``, ``answer:defect``, ``crop-then:defect``, or a script file."""
        kind, _, arg = spec.partition(":")
        if kind == "fault":
            return cls.fault(arg)
        answers = {"good": ANSWER_GOOD, "defect": ANSWER_DEFECT}
        if kind in ("answer", "crop-then") and arg in answers:
            turns = [answers[arg]] if kind == "answer" else [CROP_CALL, answers[arg]]
            return cls(turns, label=spec)
        return cls.from_file(spec)


def dump_script(turns: Sequence[str], path: str | Path) -> None:
    """Write turns as a script file that `from_file` reads back."""
    Path(path).write_text(json.dumps({"turns": list(turns)}, indent=2), encoding="utf-8")
