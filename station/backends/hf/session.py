"""One conversation on the hf backend: the KV cache stays across tool rounds, so each token is prefilled once.

Each round the loop hands over the whole conversation. The chat template is prefix-preserving, so what is new
is the rendered prompt minus the text the session already holds (the earlier prompts, and each assistant turn
as the tokens the model generated, ``<|im_end|>`` included): the tool responses with their images and the
generation prompt. Only that segment is tokenised, only its images go through the vision encoder, and only its
tokens are prefilled, together with the last generated token of the previous round, which ``generate`` never
feeds back. A conversation that is not an extension (an assistant turn rewritten by the caller, another frame)
cuts the cache back to the longest prefix that is still the same text and images; nothing is trusted blindly.

M-RoPE: transformers 5.23 gives a cached continuation text-style positions, which is wrong as soon as the new
segment holds an image (NOTES). The session therefore computes the positions itself: the model's rope index of
the new segment, shifted to start right after the last cached position, with a first row of absolute token
indices (the row transformers uses for the attention mask). ``generate`` receives the full token ids, the full
position ids, the cache and the pre-encoded new images; it slices off the cached part and extends the
positions by one per decoded token, which is right for text. Nothing depends on the model's stored rope
deltas, so several sessions can share one model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
)

from station.backends.base import BackendError, FinishReason, Generation, Session
from station.backends.hf.verdict import VerdictRecorder
from station.protocol import render_chat

if TYPE_CHECKING:
    from station.backends.hf.backend import HFBackend

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
IM_END = "<|im_end|>"


@dataclass(frozen=True)
class _Mark:
    """A point the cache can be cut back to: the end of a prefilled prompt or of a generated turn."""

    text_len: int  # characters of the rendered conversation (one <|image_pad|> per image)
    n_tokens: int
    n_images: int
    # The text that must follow: a turn cut off before <|im_end|> can only continue with it, otherwise the
    # template's text would be tokenised across a boundary that a from-scratch pass does not have.
    then: str = ""


class _Deadline(StoppingCriteria):
    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.fired = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.fired = self.deadline is not None and time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class _PrefillClock(LogitsProcessor):
    """Notes when the first logits exist, which is where prefill ends and decoding begins."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.at is None:
            if scores.is_cuda:  # kernels run asynchronously: wait for the prefill to really finish
                torch.cuda.synchronize(scores.device)
            self.at = time.monotonic()
        return scores


def message_images(messages: list[dict]) -> list[Any]:
    """The images of a conversation in the order the chat template renders their placeholders."""
    images = []
    for message in messages:
        content = message.get("content")
        if message.get("role") not in ("user", "tool") or not isinstance(content, list):
            continue  # the template renders no images for system and assistant turns
        for part in content:
            if part.get("type") == "image" or "image" in part or "image_url" in part:
                if "image" not in part:
                    raise BackendError("the hf backend takes images as arrays, not URLs")
                images.append(part["image"])
            elif part.get("type") == "video" or "video" in part:
                raise BackendError("the hf backend does not take videos")
    return images


def _same_image(a: Any, b: Any) -> bool:
    if a is b:
        return True
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b)


class HFSession(Session):
    """The model's side of one inspected part, holding its KV cache between rounds."""

    def __init__(self, backend: HFBackend, tools: list[dict]):
        self._backend = backend
        self._tools = tools
        self._reset()

    def _reset(self) -> None:
        self._cache = DynamicCache(config=self._backend.model.config)
        self._ids: list[int] = []  # every token accounted for; the last generated one is not yet in the cache
        self._positions = torch.empty(4, 0, dtype=torch.long)  # text row + 3 M-RoPE rows, per token
        self._text = ""
        self._images: list[Any] = []
        self._marks = [_Mark(0, 0, 0)]

    def close(self) -> None:
        self._reset()

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        start = time.monotonic()
        if deadline is not None and start >= deadline:
            return Generation(text="", finish_reason="deadline")
        try:
            return self._generate(messages, max_new_tokens, deadline, start)
        except BackendError:
            self._reset()
            raise
        except (RuntimeError, ValueError) as exc:  # torch errors (out of memory included) are RuntimeErrors
            self._reset()  # the cache may hold a half-written step
            raise BackendError(f"hf generation failed: {type(exc).__name__}: {exc}") from exc

    def _prepare(self, messages: list[dict]) -> tuple[str, list[Any], list[int], torch.Tensor, Any]:
        """Render the conversation, cut the cache back to what still matches it, and encode only the new
        segment: (prompt, images, all token ids, their M-RoPE positions, the new images' features)."""
        prompt = render_chat(messages, self._tools, add_generation_prompt=True)
        images = message_images(messages)
        self._rewind(prompt, images)
        segment, new_images = prompt[len(self._text) :], images[len(self._images) :]
        seg_ids, features, grid = self._encode(segment, new_images)
        positions = torch.cat([self._positions, self._segment_positions(seg_ids, grid)], dim=1)
        return prompt, images, self._ids + seg_ids, positions, features

    def _generate(
        self, messages: list[dict], max_new_tokens: int, deadline: float | None, start: float
    ) -> Generation:
        backend = self._backend
        prompt, images, full_ids, positions, features = self._prepare(messages)
        prefill_tokens = len(full_ids) - self._cache.get_seq_length()

        recorder = VerdictRecorder(backend.tokenizer, backend.branches)
        clock = _PrefillClock()
        stop_at_deadline = _Deadline(deadline)
        extra = dict(backend.generate_kwargs)
        processors = [recorder, clock, *extra.pop("logits_processor", [])]
        if backend.temperature > 0:
            processors.append(TemperatureLogitsWarper(backend.temperature))
        config = GenerationConfig(
            **backend.generation_defaults, max_new_tokens=max_new_tokens, return_dict_in_generate=True
        )
        unused = config.update(**extra)
        criteria = [stop_at_deadline, *unused.pop("stopping_criteria", [])]
        device = backend.device
        inputs: dict[str, Any] = {
            "input_ids": torch.tensor([full_ids], device=device),
            "attention_mask": torch.ones(1, len(full_ids), dtype=torch.long, device=device),
            "position_ids": positions[:, None, :].to(device),
            "past_key_values": self._cache,
        }
        if features is not None:
            inputs["mm_encoder_outputs"] = {"image": features}
        with torch.inference_mode():
            out = backend.model.generate(
                **inputs,
                generation_config=config,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList(criteria),
                **unused,
            )
        generated = out.sequences[0, len(full_ids) :].tolist()
        end = time.monotonic()

        stopped = bool(generated) and generated[-1] in backend.stop_ids
        reason: FinishReason = "stop" if stopped else ("deadline" if stop_at_deadline.fired else "length")
        turn = backend.tokenizer.decode(
            generated, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        self._commit(prompt, images, full_ids, positions, generated, turn, stopped)
        text = backend.tokenizer.decode(
            generated[:-1] if stopped else generated,
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        prefill_end = clock.at if clock.at is not None else end
        return Generation(
            text=text,
            prefill_tokens=prefill_tokens,
            generated_tokens=len(generated),
            prefill_s=prefill_end - start,
            decode_s=end - prefill_end,
            finish_reason=reason,
            verdict_prob=recorder.verdict_prob(generated),
        )

    def _rewind(self, prompt: str, images: list[Any]) -> None:
        """Cut the cache back to the longest kept prefix of this conversation (all of it, normally)."""
        for index in range(len(self._marks) - 1, -1, -1):
            mark = self._marks[index]
            if (
                prompt.startswith(self._text[: mark.text_len] + mark.then)
                and len(images) >= mark.n_images
                and all(map(_same_image, images[: mark.n_images], self._images[: mark.n_images]))
            ):
                break
        if mark.n_tokens == len(self._ids):
            return
        if mark.n_tokens == 0:
            self._reset()
            return
        self._cache.crop(mark.n_tokens - self._cache.get_seq_length())  # a negative count removes tokens
        del self._ids[mark.n_tokens :], self._images[mark.n_images :], self._marks[index + 1 :]
        self._positions = self._positions[:, : mark.n_tokens]
        self._text = self._text[: mark.text_len]

    def _encode(self, segment: str, images: list[Any]) -> tuple[list[int], Any, torch.Tensor | None]:
        """Token ids of a rendered segment with its image placeholders expanded, and its encoded images."""
        backend = self._backend
        pieces = segment.split(IMAGE_PAD)
        if len(pieces) - 1 != len(images) or VIDEO_PAD in segment:
            raise BackendError(
                f"message text holds {IMAGE_PAD} or {VIDEO_PAD} of its own; the markers are reserved"
            )
        tokenize = backend.tokenizer
        if not images:
            return tokenize(segment, add_special_tokens=False)["input_ids"], None, None
        pixels = backend.image_processor(images)
        grid = pixels["image_grid_thw"]
        merge = backend.image_processor.merge_size**2
        ids: list[int] = []
        for piece, count in zip(pieces, [*(grid.prod(-1) // merge).tolist(), 0], strict=True):
            ids.extend(tokenize(piece, add_special_tokens=False)["input_ids"])
            ids.extend([backend.image_token_id] * count)
        model = backend.model.model
        with torch.inference_mode():
            features = model.get_image_features(
                pixels["pixel_values"].to(backend.device), grid.to(backend.device), return_dict=True
            )
        return ids, features, grid

    def _segment_positions(self, ids: list[int], grid: torch.Tensor | None) -> torch.Tensor:
        """Positions of a new segment as a from-scratch pass over the whole conversation would give them."""
        tokens = torch.tensor([ids])
        kinds = (tokens == self._backend.image_token_id).int()
        rope, _ = self._backend.model.model.get_rope_index(
            input_ids=tokens, mm_token_type_ids=kinds, image_grid_thw=grid
        )
        offset = int(self._positions[1, -1]) + 1 if self._ids else 0
        index = torch.arange(len(self._ids), len(self._ids) + len(ids))
        return torch.cat([index[None], rope[:, 0, :].cpu() + offset])

    def _commit(
        self,
        prompt: str,
        images: list[Any],
        full_ids: list[int],
        positions: torch.Tensor,
        generated: list[int],
        turn: str,
        stopped: bool,
    ) -> None:
        """Record what the cache now holds: the prompt, then the generated tokens (the last one pending)."""
        self._marks.append(_Mark(len(prompt), len(full_ids), len(images)))
        after = int(positions[1, -1]) + 1
        steps = torch.arange(len(generated))
        generated_positions = torch.cat([(len(full_ids) + steps)[None], (after + steps).expand(3, -1)])
        self._ids = full_ids + generated
        self._positions = torch.cat([positions, generated_positions], dim=1)
        self._text = prompt + turn
        self._images = list(images)
        self._marks.append(
            _Mark(len(self._text), len(self._ids), len(images), then="" if stopped else IM_END)
        )
