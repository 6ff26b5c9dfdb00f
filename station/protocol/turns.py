"""The three things a model turn can be: tool calls, a final answer, or a typed parse error.

Each parsed type can render itself back to text. That text is exactly what Qwen3-VL's chat template
renders for the same assistant message, which is what makes a trained trajectory and a runtime turn the
same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

ParseErrorCode = Literal[
    "empty",  # nothing but whitespace
    "no_action",  # neither a tool call nor an answer
    "truncated",  # an opened tag never closed: generation hit its token limit
    "bad_json",  # the body of <tool_call> or <answer> is not a JSON object
    "bad_tool_call",  # JSON without a string "name" or with non-object "arguments"
    "bad_answer",  # the answer breaks the schema (fields, values, box)
    "conflict",  # tool calls and an answer in the same turn
    "multiple_answers",
]


def _dumps(value: object) -> str:
    """JSON the way the chat template's ``tojson`` writes it (", " and ": " separators, keys in order)."""
    return json.dumps(value, ensure_ascii=False)


def think_block(reasoning: str) -> str:
    return f"<think>\n{reasoning}\n</think>"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict
    # The arguments exactly as the model wrote them; re-rendering uses them so the text stays byte-identical.
    raw_arguments: str | None = None

    @property
    def arguments_text(self) -> str:
        return self.raw_arguments if self.raw_arguments is not None else _dumps(self.arguments)

    @property
    def text(self) -> str:
        return f'<tool_call>\n{{"name": "{self.name}", "arguments": {self.arguments_text}}}\n</tool_call>'

    def message_entry(self) -> dict:
        """The ``tool_calls`` entry of an assistant message (arguments as a string render verbatim)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments_text}}


@dataclass(frozen=True)
class ToolCalls:
    """A turn that asks for evidence; ``content`` precedes the first call (usually the think block)."""

    calls: tuple[ToolCall, ...]
    content: str = ""

    @property
    def text(self) -> str:
        parts = [self.content] if self.content else []
        return "\n".join([*parts, *(call.text for call in self.calls)])

    def message(self) -> dict:
        return {
            "role": "assistant",
            "content": self.content,
            "tool_calls": [c.message_entry() for c in self.calls],
        }


@dataclass(frozen=True)
class Answer:
    """The final verdict. ``confidence`` is the probability that the part is defective."""

    anomaly: bool
    type: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    confidence: float | None = None
    content: str = field(default="", compare=False)  # the turn's text before <answer>, e.g. the think block

    def payload(self) -> dict:
        return {
            "anomaly": "yes" if self.anomaly else "no",
            "type": self.type,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "confidence": self.confidence,
        }

    @property
    def answer_text(self) -> str:
        return f"<answer>{_dumps(self.payload())}</answer>"

    @property
    def text(self) -> str:
        return f"{self.content}\n{self.answer_text}" if self.content else self.answer_text

    def message(self) -> dict:
        return {"role": "assistant", "content": self.text}


@dataclass(frozen=True)
class ParseError:
    code: ParseErrorCode
    message: str


ParsedTurn = ToolCalls | Answer | ParseError
