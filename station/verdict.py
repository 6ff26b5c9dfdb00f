"""The verdict: the one record every consumer reads (PLC link, audit, metrics, re-validation, training).

It is JSON (Pydantic) with a schema version. A fail-safe verdict is a reject with a machine-readable
``reason`` and no confidence, so metrics can count fail-safes apart from the model's own rejects.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

SCHEMA_VERSION = 1

FailSafeReason = Literal[
    "corrupt_frame",  # the image cannot be used
    "deadline",  # no answer before the part's deadline
    "backend_error",  # the model could not run or raised
    "parse_error",  # the model's turn is not a tool call or an answer
    "token_limit",  # the turn was cut off at max_new_tokens before it was complete
    "tool_limit",  # more tool calls than the configuration allows
    "tool_error",  # more failed tool calls (unknown tool, bad arguments) than allowed
    "internal_error",  # a bug in the station; the part is still rejected and counted
]
Decision = Literal["accept", "reject"]
HEADLINE_FIELDS = (
    "decision",
    "anomaly",
    "type",
    "bbox",
    "confidence",
    "confidence_source",
    "threshold",
    "fail_safe",
    "reason",
    "detail",
    "tool_calls",
)


class ToolCallRecord(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool
    error: dict[str, str] | None = None
    observation: str = ""  # the text the model read back
    images: int = 0  # how many images came back with it
    seconds: float = 0.0


class RoundRecord(BaseModel):
    """One model turn and the tools it called."""

    index: int
    text: str
    kind: Literal["tool_calls", "answer", "parse_error", "no_output"]
    parse_error: dict[str, str] | None = None
    finish_reason: str | None = None
    prefill_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    model_s: float = 0.0  # wall time of the model call as the loop saw it
    tools_s: float = 0.0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)


class Timings(BaseModel):
    total_s: float = 0.0
    model_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tools_s: float = 0.0


class Verdict(BaseModel):
    schema_version: int = SCHEMA_VERSION
    part_id: str | None = None
    product: str | None = None
    decision: Decision
    anomaly: bool | None = None  # the model's answer; None when it gave none
    type: str | None = None
    bbox: list[float] | None = None  # 0-1000 grid
    bbox_px: list[int] | None = None  # pixels of the inspected frame
    confidence: float | None = None  # probability the part is defective; None on a fail-safe
    confidence_source: Literal["logits", "stated"] | None = None
    stated_confidence: float | None = None  # what the model wrote, kept when logits were used instead
    threshold: float
    fail_safe: bool = False
    reason: FailSafeReason | None = None
    detail: str | None = None  # human-readable explanation of a fail-safe
    backend: str
    model: str
    tool_calls: int = 0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    timings: Timings = Field(default_factory=Timings)
    trace: list[RoundRecord] = Field(default_factory=list)

    # Images the model saw (frame, crops, enhanced views): kept for the audit's evidence, never serialised.
    _evidence: list[tuple[str, np.ndarray]] = PrivateAttr(default_factory=list)

    @property
    def evidence(self) -> list[tuple[str, np.ndarray]]:
        return self._evidence

    @property
    def rejected(self) -> bool:
        return self.decision == "reject"

    def headline(self) -> dict[str, Any]:
        """The decision and the answer behind it, without the trace: what the audit row and the operator page
        show of every part."""
        return self.model_dump(include=set(HEADLINE_FIELDS))
