"""Does an export still compute what the checkpoint computes? torch (hf backend) vs the export, turn by turn.

The export is an `indus export onnx` or `indus export gguf` directory (its manifest says which); both run on
the CPU here, as torch does (fp32), so the check measures the export and not a device's arithmetic.

A random or barely trained model seldom writes protocol turns, so each round's turn is forced (`ForcedTurn`)
and both backends score the same token sequence: the comparison covers the whole multi-round conversation
(cached continuations with new images included), not just a first prompt. Compared per step: the greedy
token (argmax of the model's own scores) and the largest logit difference.

`check_export` adds what the station will actually see: both runtimes run the real agent loop, free and
greedy, on the same parts, and their turns and verdicts are compared. It is the gate an export must pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from export.manifest import Manifest, ManifestError
from station.agent import Agent
from station.agent_config import AgentConfig
from station.backends.base import Backend, BackendError, Generation, Session
from station.backends.hf import HFBackend
from station.protocol import Answer, ToolCall, ToolCalls, assistant_message, opening_messages, tool_message
from station.protocol.turns import think_block
from station.verdict import Verdict
from tools.registry import ToolContext
from tools.toolkit import default_registry


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


def fit_messages(messages: list[dict], size: tuple[int, int] | None) -> list[dict]:
    """``messages`` with every image resized as the onnx backend resizes it, for the torch side (as they are
    when ``size`` is None)."""
    if size is None:
        return messages
    from station.backends.onnx import fit_image

    def fit(part: dict) -> dict:
        return {**part, "image": fit_image(part["image"], size)} if "image" in part else part

    return [
        {**m, "content": [fit(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]


def run_rounds(
    backend: Backend,
    recorder: ForcedTurn,
    rounds: Sequence[tuple[list[dict], str]],
    tools: list[dict],
    tokenizer: Any = None,
) -> list[tuple[Any, torch.Tensor]]:
    """Each round's generation and recorded scores, in one session (so the KV cache carries over).

    ``tokenizer`` spells the forced turns (default: the backend's own); give both sides of a comparison the
    same one, so they are forced through the same token ids.
    """
    tokenizer = tokenizer or backend.tokenizer  # type: ignore[attr-defined]  # hf, onnx and gguf have one
    results = []
    with backend.open_session(tools) as session:
        for messages, turn in rounds:
            recorder.play([*tokenizer.encode(turn, add_special_tokens=False), backend.stop_ids[0]])  # type: ignore[attr-defined]
            generation = session.generate(messages, max_new_tokens=len(recorder.tokens) + 1)
            results.append((generation, torch.stack(recorder.scores)))
    return results


def load_export(export_dir: Path, turns: ForcedTurn) -> tuple[Any, tuple[int, int] | None]:
    """The export's backend on the CPU behind ``turns``, and the one image size it takes (None: any size).

    The ONNX vision graph takes one size, so torch must see the same resized images; the GGUF backend
    sizes images as the hf processor does, so both sides see the originals.
    """
    try:
        kind = Manifest.read(export_dir).format
    except ManifestError as exc:
        raise BackendError(str(exc)) from exc
    if kind == "onnx":
        from station.backends.onnx import OnnxBackend

        onnx = OnnxBackend(export_dir, logits_processors=[turns])
        return onnx, tuple(onnx.manifest.extra["image_size"])
    if kind == "gguf":
        try:
            from station.backends.gguf import GGUFBackend
        except ImportError as exc:
            raise BackendError(f"checking a GGUF export needs the 'gguf' extra: {exc}") from exc
        # as many threads as torch: llama.cpp's default (every core for prefill) crawls on a shared CPU
        gguf = GGUFBackend(export_dir, n_threads=torch.get_num_threads(), logits_processors=[turns])
        return gguf, None
    raise BackendError(f"{export_dir} holds a {kind!r} export: only onnx and gguf exports can be checked")


def runtime_facts(backend: Any) -> dict[str, Any]:
    """Where the export ran: the providers onnxruntime really used, or llama.cpp's device."""
    if hasattr(backend, "providers_in_use"):
        return {"providers": backend.providers_in_use}
    return {"device": backend.device}


class Runtimes:
    """Torch (CPU fp32) and the export, loaded once, each behind a `ForcedTurn`.

    A `ForcedTurn` that plays nothing only records, so the same pair serves the forced-turn logit
    comparison and free greedy agent runs without loading a checkpoint twice.
    """

    def __init__(self, model_dir: str | Path, export_dir: str | Path):
        self.export_dir = Path(export_dir)
        self.export_turns = ForcedTurn()
        self.export, self.size = load_export(self.export_dir, self.export_turns)
        self.name: str = self.export.name  # "onnx" or "gguf": the key of the export's figures
        self.torch_turns = ForcedTurn()
        self.reference = HFBackend(
            model_dir, device="cpu", dtype="float32", generate_kwargs={"logits_processor": [self.torch_turns]}
        )


def check_parity(
    model_dir: str | Path,
    export_dir: str | Path,
    rounds: Sequence[tuple[list[dict], str]],
    *,
    tools: list[dict],
    record: bool = True,
    runtimes: Runtimes | None = None,
) -> dict[str, Any]:
    """Torch vs the export over ``rounds`` (each: the conversation so far, the turn to force).

    Each round's messages must extend the previous round's with that round's forced turn (as the agent
    loop builds them). For an ONNX export, images are resized to its grid for both sides. Both sides are
    forced through the same token ids (the checkpoint's tokenizer). With ``record`` the result goes into
    the export's manifest (``parity``). ``runtimes`` reuses backends already loaded.
    """
    runtimes = runtimes or Runtimes(model_dir, export_dir)
    export, name = runtimes.export, runtimes.name
    fitted = [(fit_messages(messages, runtimes.size), turn) for messages, turn in rounds]
    tokenizer = runtimes.reference.tokenizer
    per_round = []
    for (ref_gen, ref_scores), (gen, scores) in zip(
        run_rounds(runtimes.reference, runtimes.torch_turns, fitted, tools, tokenizer),
        run_rounds(export, runtimes.export_turns, rounds, tools, tokenizer),
        strict=True,
    ):
        finite = torch.isfinite(ref_scores) & torch.isfinite(scores)
        per_round.append(
            {
                "steps": len(scores),
                "greedy_equal": bool(torch.equal(ref_scores.argmax(-1), scores.argmax(-1))),
                "greedy_agreement": float((ref_scores.argmax(-1) == scores.argmax(-1)).float().mean()),
                "max_abs_logit_diff": float((ref_scores - scores)[finite].abs().max()),
                "prefill_tokens": {"torch": ref_gen.prefill_tokens, name: gen.prefill_tokens},
                "prefill_s": {"torch": ref_gen.prefill_s, name: gen.prefill_s},
                "decode_s": {"torch": ref_gen.decode_s, name: gen.decode_s},
                "text_equal": ref_gen.text == gen.text,
                "verdict_prob": {"torch": ref_gen.verdict_prob, name: gen.verdict_prob},
            }
        )
    result = {
        "format": name,
        "quantization": export.manifest.quantization,
        **runtime_facts(export),
        "rounds": per_round,
        "greedy_equal": all(r["greedy_equal"] for r in per_round),
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in per_round),
    }
    if record:
        record_parity(runtimes.export_dir, result)
    return result


def record_parity(export_dir: Path, parity: dict[str, Any]) -> None:
    manifest = Manifest.read(export_dir)
    manifest.parity = parity
    manifest.write(export_dir)


VERDICT_FIELDS = ("decision", "anomaly", "type", "reason")
# A crop, an enhanced view of it, then an answer: a multi-round conversation with a new image each round.
_REGION = [250, 250, 750, 750]
FORCED_TURNS: tuple[ToolCalls | Answer, ...] = (
    ToolCalls(calls=(ToolCall("crop", {"bbox": _REGION}),), content=think_block("Look closer.")),
    ToolCalls(
        calls=(ToolCall("enhance", {"mode": "edges", "bbox": _REGION}),), content=think_block("Edges.")
    ),
    Answer(
        anomaly=True, type="spot", bbox=(400, 400, 600, 600), confidence=0.8, content=think_block("A spot.")
    ),
)


def synthetic_parts(
    count: int, seed: int, size: tuple[int, int] = (240, 320)
) -> list[tuple[str, np.ndarray]]:
    """Plain noisy plates, every other one with a dark spot: enough for the two runtimes to disagree on,
    without real images on the box that runs the check."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    parts = []
    for index in range(count):
        image = rng.normal(rng.uniform(100, 200), 6, (*size, 3))
        if index % 2:
            cy, cx = rng.uniform(0.25, 0.75, 2) * size
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(8, 20) ** 2] = rng.uniform(20, 60)
        parts.append((f"synthetic-{seed}-{index}", np.clip(image, 0, 255).astype(np.uint8)))
    return parts


def forced_rounds(frame: np.ndarray) -> list[tuple[list[dict], str]]:
    """`FORCED_TURNS` on ``frame`` as `check_parity` takes them, with real tool observations."""
    registry = default_registry()
    context = ToolContext(frame=frame)
    messages = opening_messages(frame, None)
    rounds = []
    for turn in FORCED_TURNS:
        rounds.append((list(messages), turn.text))
        messages.append(assistant_message(turn))
        if isinstance(turn, ToolCalls):
            messages.extend(tool_message(registry.call(c.name, c.arguments, context)) for c in turn.calls)
    return rounds


class _FittedSession(Session):
    def __init__(self, inner: Session, size: tuple[int, int] | None):
        self._inner, self._size = inner, size

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        return self._inner.generate(
            fit_messages(messages, self._size), max_new_tokens=max_new_tokens, deadline=deadline
        )

    def close(self) -> None:
        self._inner.close()


class FittedBackend(Backend):
    """The torch backend seeing every image (frame and tool observations) at the export's fixed size (ONNX;
    ``size`` None leaves them as they are), so a disagreement is the runtime's and not the resize's."""

    def __init__(self, inner: HFBackend, size: tuple[int, int] | None):
        self.inner, self.size, self.name = inner, size, inner.name

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def open_session(self, tools: list[dict]) -> Session:
        return _FittedSession(self.inner.open_session(tools), self.size)


def _token_counts(tokenizer: Any, reference: str, candidate: str) -> tuple[int, int]:
    """Identical tokens position by position, and the longer length: a missing or extra token is a miss."""
    a = tokenizer.encode(reference, add_special_tokens=False)
    b = tokenizer.encode(candidate, add_special_tokens=False)
    return sum(x == y for x, y in zip(a, b, strict=False)), max(len(a), len(b))


def _ratio(same: int, total: int) -> float:
    return same / total if total else 1.0


def compare_verdicts(tokenizer: Any, reference: Verdict, candidate: Verdict, name: str) -> dict[str, Any]:
    """One part's torch and export verdicts, round by round (a round one side never reached is a miss);
    ``name`` keys the export's side."""
    rounds, same, total = [], 0, 0
    for ref, cand in zip_longest(reference.trace, candidate.trace):
        ref_text, cand_text = (ref.text if ref else ""), (cand.text if cand else "")
        equal, length = _token_counts(tokenizer, ref_text, cand_text)
        same, total = same + equal, total + length
        rounds.append(
            {
                "text_equal": ref is not None and cand is not None and ref_text == cand_text,
                "token_agreement": _ratio(equal, length),
            }
        )
    fields = {name: (getattr(reference, name), getattr(candidate, name)) for name in VERDICT_FIELDS}
    return {
        "rounds": rounds,
        "same_tokens": same,
        "tokens": total,
        "token_agreement": _ratio(same, total),
        "verdict_equal": all(a == b for a, b in fields.values()),
        "verdicts": {
            "torch": {k: v[0] for k, v in fields.items()},
            name: {k: v[1] for k, v in fields.items()},
        },
    }


def check_export(
    model_dir: str | Path,
    export_dir: str | Path,
    parts: Sequence[tuple[str, np.ndarray]],
    *,
    max_new_tokens: int = 64,
    min_token_agreement: float = 0.99,
    min_verdict_agreement: float = 0.95,
    record: bool = True,
) -> dict[str, Any]:
    """The agent loop on torch and on the export over ``parts``, plus `check_parity` on the first part.

    Both loops run with the same greedy `AgentConfig` and a deadline far out of reach, so only the runtimes
    can make them differ. ``passed`` is False (with ``failures`` saying why) when the token agreement (agent
    turns and forced-turn steps alike) or the verdict agreement falls below its bar. With ``record`` the
    result is the export's manifest ``parity``.
    """
    if not parts:
        raise ValueError("check_export needs at least one image")
    runtimes = Runtimes(model_dir, export_dir)
    config = AgentConfig(max_new_tokens=max_new_tokens, deadline_s=3600.0)
    tokenizer = runtimes.reference.tokenizer  # one tokenizer counts both sides' tokens
    agents = Agent(FittedBackend(runtimes.reference, runtimes.size), config), Agent(runtimes.export, config)
    per_part = {}
    try:
        for name, image in parts:
            runtimes.torch_turns.play(None)
            runtimes.export_turns.play(None)
            reference, candidate = (agent.inspect(image, part_id=name) for agent in agents)
            per_part[name] = compare_verdicts(tokenizer, reference, candidate, runtimes.name)
    finally:
        for agent in agents:
            agent.close()
    logits = check_parity(
        model_dir,
        export_dir,
        forced_rounds(parts[0][1]),
        tools=agents[1].registry.schemas(),
        record=False,
        runtimes=runtimes,
    )
    steps = sum(r["steps"] for r in logits["rounds"])
    forced_agreement = sum(r["greedy_agreement"] * r["steps"] for r in logits["rounds"]) / steps
    token_agreement = _ratio(
        sum(p["same_tokens"] for p in per_part.values()), sum(p["tokens"] for p in per_part.values())
    )
    verdict_agreement = sum(p["verdict_equal"] for p in per_part.values()) / len(per_part)
    failures = [
        f"{what} {value:.4f} < {bar}"
        for what, value, bar in (
            ("agent token agreement", token_agreement, min_token_agreement),
            ("forced-turn greedy agreement", forced_agreement, min_token_agreement),
            ("verdict agreement", verdict_agreement, min_verdict_agreement),
        )
        if value < bar
    ]
    result = {
        "format": runtimes.name,
        "quantization": runtimes.export.manifest.quantization,
        **runtime_facts(runtimes.export),
        "max_new_tokens": max_new_tokens,
        "bars": {"min_token_agreement": min_token_agreement, "min_verdict_agreement": min_verdict_agreement},
        "parts": per_part,
        "token_agreement": token_agreement,
        "verdict_agreement": verdict_agreement,
        "forced_greedy_agreement": forced_agreement,
        "max_abs_logit_diff": logits["max_abs_logit_diff"],
        "logits": logits,
        "passed": not failures,
        "failures": failures,
    }
    if record:
        record_parity(runtimes.export_dir, result)
    return result
