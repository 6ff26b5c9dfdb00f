"""One conversation on the onnx backend: `HFSession`'s bookkeeping with onnxruntime doing the forward passes.

Everything that decides what is new each round (rendering, rewinding, image encoding, M-RoPE positions, what
the cache holds afterwards) is `HFSession`'s, so the two backends prefill the same tokens at the same
positions. What differs is the cache (`KVCache`: numpy arrays, one pair per layer) and the decoding loop,
which onnxruntime cannot hand to ``generate``: greedy, with the hf backend's order of logits processing
(vision tokens suppressed, then the verdict recorder, then the caller's processors).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from station.backends.base import BackendError, FinishReason, Generation
from station.backends.hf.session import HFSession
from station.backends.hf.verdict import VerdictRecorder

if TYPE_CHECKING:
    from station.backends.onnx.backend import OnnxBackend


class KVCache:
    """Past keys and values as the decoder graph takes them, with the two calls HFSession makes on a cache."""

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int):
        empty = np.zeros((1, kv_heads, 0, head_dim), dtype=np.float32)
        self.tensors = [empty] * (2 * num_layers)  # key, value per layer

    def get_seq_length(self) -> int:
        return self.tensors[0].shape[2]

    def crop(self, count: int) -> None:
        """Keep the first ``count`` tokens; a negative count removes that many from the end."""
        keep = count if count >= 0 else self.get_seq_length() + count
        self.tensors = [t[:, :, :keep] for t in self.tensors]


class OnnxSession(HFSession):
    """The model's side of one inspected part, on onnxruntime."""

    _backend: OnnxBackend

    def _reset(self) -> None:
        super()._reset()
        text = self._backend.model.config.text_config
        self._cache = KVCache(text.num_hidden_layers, text.num_key_value_heads, text.head_dim)

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        try:
            return super().generate(messages, max_new_tokens=max_new_tokens, deadline=deadline)
        except BackendError:
            raise
        except Exception as exc:  # onnxruntime's errors are plain Exceptions
            self._reset()
            raise BackendError(f"onnx generation failed: {type(exc).__name__}: {exc}") from exc

    def _generate(
        self, messages: list[dict], max_new_tokens: int, deadline: float | None, start: float
    ) -> Generation:
        backend = self._backend
        prompt, images, full_ids, positions, features = self._prepare(messages)
        cached = self._cache.get_seq_length()
        fed = np.array([full_ids[cached:]], dtype=np.int64)

        embeds = self._embed(fed)
        deepstack = np.zeros((backend.model.num_deepstack, *embeds.shape), dtype=np.float32)
        if features is not None:
            at = fed[0] == backend.image_token_id
            embeds[0, at] = features.pooler_output
            for layer, feats in enumerate(features.deepstack_features):
                deepstack[layer, 0, at] = feats
        logits = self._forward(embeds, positions[:, cached:], deepstack)
        prefill_end = time.monotonic()

        recorder = VerdictRecorder(backend.tokenizer, backend.branches)
        generated: list[int] = []
        reason: FinishReason = "length"
        after = int(positions[1, -1]) + 1
        while True:
            scores = torch.from_numpy(logits[:, -1].astype(np.float32))
            scores[:, backend.suppress_ids] = -torch.inf
            ids = torch.tensor([full_ids + generated])
            for processor in (recorder, *backend.logits_processors):
                scores = processor(ids, scores)
            generated.append(int(scores[0].argmax()))
            if generated[-1] in backend.stop_ids:
                reason = "stop"
                break
            if deadline is not None and time.monotonic() >= deadline:
                reason = "deadline"
                break
            if len(generated) == max_new_tokens:
                break
            step = len(generated) - 1
            position = np.array([len(full_ids) + step, *[after + step] * 3], dtype=np.int64)
            embeds = self._embed(np.array([[generated[-1]]], dtype=np.int64))
            logits = self._forward(
                embeds, torch.from_numpy(position[:, None]), np.zeros_like(deepstack[:, :, :1])
            )
        end = time.monotonic()

        stopped = reason == "stop"
        decode = backend.tokenizer.decode
        turn = decode(generated, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        self._commit(prompt, images, full_ids, positions, generated, turn, stopped)
        text = decode(
            generated[:-1] if stopped else generated,
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        return Generation(
            text=text,
            prefill_tokens=fed.shape[1],
            generated_tokens=len(generated),
            prefill_s=prefill_end - start,
            decode_s=end - prefill_end,
            finish_reason=reason,
            verdict_prob=recorder.verdict_prob(generated),
        )

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        return self._backend.model.sessions["embed"].run(None, {"input_ids": ids})[0]

    def _forward(self, embeds: np.ndarray, positions: Any, deepstack: np.ndarray) -> np.ndarray:
        """One decoder pass over ``embeds`` after the cache; the cache grows by them; returns the logits."""
        cache = self._cache
        length = cache.get_seq_length() + embeds.shape[1]
        feeds = {
            "inputs_embeds": embeds,
            "attention_mask": np.ones((1, length), dtype=np.int64),
            "position_ids": np.ascontiguousarray(np.asarray(positions, dtype=np.int64)[:, None, :]),
            "deepstack": deepstack,
        }
        for index, tensor in enumerate(cache.tensors):
            feeds[f"past_{'key' if index % 2 == 0 else 'value'}_{index // 2}"] = tensor
        logits, *cache.tensors = self._backend.model.sessions["decoder"].run(None, feeds)
        return logits
