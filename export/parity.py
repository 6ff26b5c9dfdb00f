"""Does an export still compute what the checkpoint computes? torch (hf backend) vs the export, turn by turn.

A random or barely trained model seldom writes protocol turns, so each round's turn is forced (`ForcedTurn`)
and both backends score the same token sequence: the comparison covers the whole multi-round conversation
(cached continuations with new images included), not just a first prompt. Compared per step: the greedy
token (argmax of the model's own scores) and the largest logit difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor

from export.manifest import Manifest
from station.backends.base import Backend
from station.backends.hf import HFBackend


class ForcedTurn(LogitsProcessor):
    """Forces a turn's tokens (the last one repeated past the end) and records the scores it was given."""

    def __init__(self) -> None:
        self.play(None)

    def play(self, tokens: list[int] | None) -> None:
        self.tokens, self.start, self.scores = tokens, None, []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores[0].clone())
        if self.tokens is None:
            return scores
        if self.start is None:
            self.start = input_ids.shape[1]
        step = min(input_ids.shape[1] - self.start, len(self.tokens) - 1)
        forced = torch.full_like(scores, -torch.inf)
        forced[0, self.tokens[step]] = 0.0
        return forced


def fit_messages(messages: list[dict], size: tuple[int, int]) -> list[dict]:
    """``messages`` with every image resized as the onnx backend resizes it, for the torch side."""
    from station.backends.onnx import fit_image

    def fit(part: dict) -> dict:
        return {**part, "image": fit_image(part["image"], size)} if "image" in part else part

    return [
        {**m, "content": [fit(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]


def run_rounds(
    backend: Backend, recorder: ForcedTurn, rounds: Sequence[tuple[list[dict], str]], tools: list[dict]
) -> list[tuple[Any, torch.Tensor]]:
    """Each round's generation and recorded scores, in one session (so the KV cache carries over)."""
    tokenizer = backend.tokenizer  # type: ignore[attr-defined]  # hf and onnx backends both have one
    results = []
    with backend.open_session(tools) as session:
        for messages, turn in rounds:
            recorder.play([*tokenizer.encode(turn, add_special_tokens=False), backend.stop_ids[0]])  # type: ignore[attr-defined]
            generation = session.generate(messages, max_new_tokens=len(recorder.tokens) + 1)
            results.append((generation, torch.stack(recorder.scores)))
    return results


def check_parity(
    model_dir: str | Path,
    export_dir: str | Path,
    rounds: Sequence[tuple[list[dict], str]],
    *,
    tools: list[dict],
    record: bool = True,
) -> dict[str, Any]:
    """Torch vs the ONNX export over ``rounds`` (each: the conversation so far, the turn to force).

    Each round's messages must extend the previous round's with that round's forced turn (as the agent
    loop builds them). Images are resized to the export's grid for both sides. With ``record`` the result
    goes into the export's manifest (``parity``).
    """
    from station.backends.onnx import OnnxBackend

    export_dir = Path(export_dir)
    onnx_turns = ForcedTurn()
    onnx = OnnxBackend(export_dir, logits_processors=[onnx_turns])
    size = tuple(onnx.manifest.extra["image_size"])
    torch_turns = ForcedTurn()
    reference = HFBackend(
        model_dir, device="cpu", dtype="float32", generate_kwargs={"logits_processor": [torch_turns]}
    )
    fitted = [(fit_messages(messages, size), turn) for messages, turn in rounds]
    per_round = []
    for (ref_gen, ref_scores), (gen, scores) in zip(
        run_rounds(reference, torch_turns, fitted, tools),
        run_rounds(onnx, onnx_turns, rounds, tools),
        strict=True,
    ):
        finite = torch.isfinite(ref_scores) & torch.isfinite(scores)
        per_round.append(
            {
                "steps": len(scores),
                "greedy_equal": bool(torch.equal(ref_scores.argmax(-1), scores.argmax(-1))),
                "greedy_agreement": float((ref_scores.argmax(-1) == scores.argmax(-1)).float().mean()),
                "max_abs_logit_diff": float((ref_scores - scores)[finite].abs().max()),
                "prefill_tokens": {"torch": ref_gen.prefill_tokens, "onnx": gen.prefill_tokens},
                "prefill_s": {"torch": ref_gen.prefill_s, "onnx": gen.prefill_s},
                "decode_s": {"torch": ref_gen.decode_s, "onnx": gen.decode_s},
                "text_equal": ref_gen.text == gen.text,
            }
        )
    result = {
        "quantization": onnx.manifest.quantization,
        "providers": onnx.providers_in_use,
        "rounds": per_round,
        "greedy_equal": all(r["greedy_equal"] for r in per_round),
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in per_round),
    }
    if record:
        manifest = Manifest.read(export_dir)
        manifest.parity = result
        manifest.write(export_dir)
    return result
