"""The hf backend: a local Qwen-VL checkpoint run with transformers and torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig

from station.backends.base import Backend, BackendError
from station.backends.hf.loading import (
    apply_adapter,
    check_adapter_dir,
    check_model_dir,
    load_model,
    resolve_device,
    resolve_dtype,
)
from station.backends.hf.processor import QwenVLProcessor
from station.backends.hf.session import HFSession
from station.backends.hf.verdict import BranchTokens

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# The model cannot produce images; a vision token in its output would break the next round's placeholders.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


class HFBackend(Backend):
    """Qwen3-VL (dense or MoE) or Qwen2.5-VL from a local directory, with an optional LoRA adapter merged in.

    Weights load from safetensors only. ``device="auto"`` takes CUDA when torch sees it, else the CPU;
    ``dtype="auto"`` is bfloat16 on CUDA and float32 on CPU. ``min_pixels``/``max_pixels`` override the
    checkpoint's image bounds (each image costs about pixels / (patch * merge)² tokens: 1024 px² per token
    for Qwen3-VL's 16 px patches). Decoding is greedy unless ``temperature`` > 0 (plain temperature sampling;
    add top-k/top-p as logits processors). The checkpoint's own sampling defaults are not used: the station
    decides how to decode. ``generate_kwargs`` go to ``model.generate`` for every turn; their
    ``logits_processor`` list runs after the verdict recorder, so a constraining processor cannot distort
    the verdict probability.

    Qwen2.5-VL grounds boxes in absolute pixels of the resized input image, while the protocol (and Qwen3-VL)
    uses a 0-1000 grid: it loads and runs here, with the same chat template and tools, but its boxes mean
    something else until it is fine-tuned on the protocol's trajectories.
    """

    name = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        adapter_dir: str | Path | None = None,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        max_pixels: int | None = None,
        min_pixels: int | None = None,
        temperature: float = 0.0,
        generate_kwargs: dict[str, Any] | None = None,
    ):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.model_type = check_model_dir(self.model_dir)
        if self.adapter_dir is not None:
            check_adapter_dir(self.adapter_dir)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            self.processor = QwenVLProcessor.from_pretrained(
                self.model_dir, min_pixels=min_pixels, max_pixels=max_pixels
            )
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"could not build the processor of {self.model_dir}: {exc}") from exc
        self.tokenizer = self.processor.tokenizer
        self.image_processor = self.processor.image_processor
        self.image_token_id = self._token_id("<|image_pad|>")
        self.stop_ids = [self._token_id(t) for t in STOP_TOKENS]
        model = load_model(self.model_dir, self.model_type, self.device, self.dtype)
        self.model = apply_adapter(model, self.adapter_dir) if self.adapter_dir is not None else model
        self.model.generation_config = GenerationConfig()
        self.temperature = temperature
        self.generate_kwargs = dict(generate_kwargs or {})
        self.generation_defaults: dict[str, Any] = {
            "do_sample": temperature > 0,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self._token_id("<|endoftext|>"),
            "suppress_tokens": [self._token_id(t) for t in VISION_TOKENS],
        }
        if temperature > 0:  # plain temperature sampling: switch off transformers' default top-k and top-p
            self.generation_defaults.update(top_k=0, top_p=1.0)
        self.branches = BranchTokens(self.tokenizer)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or self.tokenizer.convert_ids_to_tokens(token_id) != token:
            raise BackendError(
                f"the tokenizer of {self.model_dir} has no {token} token: not a Qwen-VL tokenizer"
            )
        return token_id

    @property
    def model_id(self) -> str:
        return str(self.model_dir) if self.adapter_dir is None else f"{self.model_dir} + {self.adapter_dir}"

    def open_session(self, tools: list[dict]) -> HFSession:
        return HFSession(self, tools)

    def close(self) -> None:
        del self.model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
