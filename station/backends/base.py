"""One small interface for "continue this multimodal conversation", whatever runs the model.

A `Backend` holds a loaded model (or a connection to one) and opens a `Session` per inspected part. The
agent loop hands the session the whole conversation every round, always extended at the end (the previous
assistant turn, then tool results); a session that keeps state (the hf KV cache, a llama.cpp context) feeds
the model only what is new, a stateless one (an OpenAI-compatible server) sends everything. Messages are the
protocol's (`station.protocol.messages`): dicts in the chat-template shape with RGB numpy images.

Backends never see deadlines as exceptions: they stop decoding at ``deadline`` when they can and say so in
``finish_reason``. The loop enforces the deadline on its own regardless, so a backend that hangs still
yields a verdict in time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "deadline"]
ConfidenceSource = Literal["logits", "stated"]


class BackendError(RuntimeError):
    """The model could not be run (load failure, server unreachable, out of memory, ...)."""


@dataclass
class Generation:
    """One assistant turn and what it cost."""

    text: str  # the turn as generated, without the end-of-turn token
    prefill_tokens: int = 0  # tokens the model processed this round before decoding (0 when unknown)
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    finish_reason: FinishReason = "stop"
    # P(yes) / (P(yes) + P(no)) at the answer's verdict token, where the backend sees the logits.
    verdict_prob: float | None = None


class Session(ABC):
    """The model's side of one conversation."""

    @abstractmethod
    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        """Produce the next assistant turn for ``messages`` (which end with a user or tool turn).

        ``deadline`` is a ``time.monotonic()`` value after which decoding should stop.
        """

    def close(self) -> None:  # noqa: B027 - stateless sessions have nothing to free
        """Release per-conversation state (KV cache, server context)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """A loaded model that can hold conversations."""

    name: str = "backend"

    @property
    @abstractmethod
    def model_id(self) -> str:
        """What the audit records as the model: a directory, a server model name, a script."""

    @abstractmethod
    def open_session(self, tools: list[dict]) -> Session:
        """Start a conversation whose system turn describes ``tools`` (function-calling schemas)."""

    def close(self) -> None:  # noqa: B027 - most backends free everything with the process
        """Free the model."""
