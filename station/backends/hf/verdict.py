"""The verdict's probability, read from the model's own distribution at the step that writes yes or no.

DESIGN.md: ``confidence`` is P(yes) / (P(yes) + P(no)) at the answer's verdict token. Tokenizers split
``"yes"`` differently (``"yes``, ``yes``, ``y`` + ``es`` ...), so a branch is every token whose text is a
non-empty prefix of what the turn must continue with for that verdict and not for the other one: after
``{"anomaly": `` the yes branch holds ``"y``, ``"yes`` and ``"yes"`` where the vocabulary has them, while
``"`` starts both and decides nothing (the next step is then the deciding one). Recording is cheap: one token
decode per step, and a softmax only at the one or two steps right after ``"anomaly":``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

# The answer up to its verdict value, at the end of the text generated so far.
_BEFORE_VALUE = re.compile(r'<answer>\s*\{\s*"anomaly"\s*:(\s*)("?)\Z')
_NEXT_FIELD = '", "type"'  # the protocol's field order: anomaly, type, bbox, confidence
_TAIL_CHARS = 64  # enough to hold '<answer>{"anomaly": "' with generous whitespace


def expected_values(text: str) -> tuple[str, str] | None:
    """How a yes and a no answer continue ``text`` (up to the next field), when it stops before the value.

    Running on to the next field counts the rare token that merges the value with what follows (``yes",``).
    """
    match = _BEFORE_VALUE.search(text)
    if match is None:
        return None
    space, quote = match.groups()
    lead = "" if quote else ('"' if space else ' "')
    return f"{lead}yes{_NEXT_FIELD}", f"{lead}no{_NEXT_FIELD}"


@cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet, in which byte-level BPE vocabularies (Qwen's included) spell tokens."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _byte_level(text: str) -> str:
    table = _byte_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


class BranchTokens:
    """Token ids that commit to one verdict, looked up in a byte-level BPE vocabulary (read once)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._vocab = tokenizer.get_vocab()
        self._branches: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    def __call__(self, yes: str, no: str) -> tuple[list[int], list[int]]:
        key = (yes, no)
        if key not in self._branches:
            self._branches[key] = (self._branch(yes, no), self._branch(no, yes))
        return self._branches[key]

    def _branch(self, text: str, other: str) -> list[int]:
        pieces = (text[:k] for k in range(1, len(text) + 1))
        ids = (self._vocab.get(_byte_level(piece)) for piece in pieces if not other.startswith(piece))
        return [i for i in ids if i is not None]


def branch_probabilities(scores: torch.Tensor, yes_ids: list[int], no_ids: list[int]) -> tuple[float, float]:
    """(P(yes branch), P(no branch)) from one step's logits over the vocabulary, softmax in float32."""
    probs = scores.float().softmax(-1)
    return float(probs[yes_ids].sum()), float(probs[no_ids].sum())


def yes_share(p_yes: float, p_no: float) -> float | None:
    """P(yes) / (P(yes) + P(no)): the verdict probability; None when neither branch has any mass."""
    total = p_yes + p_no
    return p_yes / total if total > 0 else None


def forced_verdict_prob(scores: torch.Tensor, text: str, branches: BranchTokens) -> float | None:
    """The verdict probability read from the logits that follow ``text``, a turn forced to stop right where
    the verdict value begins (``...<answer>{"anomaly": "``).

    The recorder reads the same number while generating; this is its one-step form for a caller that feeds the
    answer's opening itself (training's confidence probe), so both use the same branches and normalisation.
    """
    values = expected_values(text)
    if values is None:
        raise ValueError(f"{text[-_TAIL_CHARS:]!r} does not stop right before the verdict value")
    yes_ids, no_ids = branches(*values)
    return yes_share(*branch_probabilities(scores, yes_ids, no_ids))


@dataclass(frozen=True)
class _Step:
    index: int  # which generated token this step chose
    yes_ids: list[int]
    no_ids: list[int]
    p_yes: float
    p_no: float


class VerdictRecorder(LogitsProcessor):
    """Watches the generated text and keeps both branch probabilities where the verdict value begins.

    Put it first among the custom logits processors: it must see the model's scores before anything that
    forces or reshapes them (a constraining processor, temperature).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, branches: BranchTokens):
        self._tokenizer = tokenizer
        self._branches = branches
        self._start: int | None = None
        self._tail = ""
        self._steps: list[_Step] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        length = input_ids.shape[1]
        if self._start is None:
            self._start = length
        else:
            last = self._tokenizer.decode([int(input_ids[0, -1])], skip_special_tokens=False)
            self._tail = (self._tail + last)[-_TAIL_CHARS:]
        values = expected_values(self._tail)
        if values is not None:
            yes_ids, no_ids = self._branches(*values)
            p_yes, p_no = branch_probabilities(scores[0], yes_ids, no_ids)
            self._steps.append(_Step(length - self._start, yes_ids, no_ids, p_yes, p_no))
        return scores

    def verdict_prob(self, generated: list[int]) -> float | None:
        """P(yes) / (P(yes) + P(no)) at the step whose token committed to a verdict; None without one."""
        for step in self._steps:
            if step.index >= len(generated):
                break
            token = generated[step.index]
            if token in step.yes_ids or token in step.no_ids:
                return yes_share(step.p_yes, step.p_no)
        return None
