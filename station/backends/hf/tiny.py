"""A tiny random Qwen3-VL checkpoint, built offline, so the hf backend and training code can be tested.

The directory has the layout of a real Qwen3-VL checkpoint (config.json, model.safetensors, tokenizer files
with Qwen's special tokens, the protocol's chat template byte for byte, preprocessor_config.json) and loads
through exactly the code path of Qwen3-VL-8B. Its weights are random: it is a fixture for tests, never a
detector. Everything is a function of the seed, so two builds write the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from station.backends.hf.processor import QwenVLImageProcessor, QwenVLProcessor
from station.protocol import SYSTEM_PROMPT, chat_template
from tools.toolkit import default_registry

VOCAB_SIZE = 768  # byte-level BPE before the added tokens
# Qwen's special tokens, in Qwen's order; the tokenizer marks them special.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not special in Qwen's tokenizer: they must survive decoding with skip_special_tokens.
PROTOCOL_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
MIN_PIXELS = 32 * 32  # one merged 2x2 patch window of 16 px patches
MAX_PIXELS = 128 * 128  # at most 16 image tokens per image
NOTICE = "RANDOM WEIGHTS: a tiny Qwen3-VL for tests. It is not a detector; never use it to inspect parts."


def corpus() -> list[str]:
    """The text the protocol makes the model read and write, so the tiny BPE compresses it as Qwen's does."""
    schemas = [json.dumps(schema, ensure_ascii=False) for schema in default_registry().schemas()]
    answers = [
        '<answer>{"anomaly": "yes", "type": "scratch", "bbox": [120, 340, 410, 385], "confidence": 0.93}'
        "</answer>",
        '<answer>{"anomaly": "no", "type": null, "bbox": null, "confidence": 0.04}</answer>',
    ]
    calls = [
        '<tool_call>\n{"name": "crop", "arguments": {"bbox": [100, 200, 300, 400]}}\n</tool_call>',
        '<tool_call>\n{"name": "enhance", "arguments": {"mode": "clahe"}}\n</tool_call>',
        '<tool_call>\n{"name": "prior", "arguments": {}}\n</tool_call>',
        '<tool_call>\n{"name": "measure", "arguments": {"operation": "spacing", "items": [[1, 2], [3, 4]]}}'
        "\n</tool_call>",
    ]
    words = (
        "Product: Inspect this part for defects. <think>\n</think> good defective crack scratch stain hole "
        "missing bent shifted thread pin screw metal fabric wood plate connector bottle "
        "yes no null true false"
    )
    numbers = " ".join(str(i) for i in range(0, 1001, 7))
    return [SYSTEM_PROMPT, *schemas, *answers, *calls, words, numbers, "0.0 0.25 0.5 0.75 1.0"]


def build_tokenizer(vocab_size: int = VOCAB_SIZE, texts: Iterable[str] = ()) -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen's normaliser and pre-tokeniser, wrapped in Qwen's tokenizer class; its
    merges come from `corpus` plus ``texts``."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[SPECIAL_TOKENS[0]],
        show_progress=False,
    )
    bpe.train_from_iterator([*corpus(), *texts], trainer)
    model = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(pair) for pair in model["merges"]])
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[1:]])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TOKENS])
    tokenizer.eos_token = "<|im_end|>"  # as Qwen3-VL-Instruct's tokenizer: a turn ends the sequence
    tokenizer.chat_template = chat_template()
    return tokenizer


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a small Qwen3-VL: the tests' tiny fixture, or the demo model trained from it."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    # M-RoPE: temporal, height, width sections of the head_dim / 2 frequencies; they must sum to head_dim / 2
    mrope_section: tuple[int, int, int] = (4, 2, 2)
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_num_heads: int = 2
    patch_size: int = 16
    deepstack_visual_indexes: tuple[int, ...] = (0,)
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        if sum(self.mrope_section) != self.head_dim // 2:
            raise ValueError(
                f"mrope_section {self.mrope_section} must sum to head_dim / 2 = {self.head_dim // 2}"
            )
        if any(not 0 <= i < self.vision_depth for i in self.deepstack_visual_indexes):
            raise ValueError("deepstack_visual_indexes must name vision layers")
        if len(self.deepstack_visual_indexes) > self.num_hidden_layers:
            raise ValueError("more deepstack levels than language-model layers to inject them into")


TINY_SHAPE = ModelShape()


def build_config(tokenizer: Qwen2Tokenizer, shape: ModelShape = TINY_SHAPE) -> Qwen3VLConfig:
    ids = tokenizer.convert_tokens_to_ids
    # the vision tower's learned position table covers the largest patch grid the processor produces
    grid_side = math.isqrt(shape.max_pixels) // shape.patch_size
    return Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": shape.hidden_size,
            "intermediate_size": shape.intermediate_size,
            "num_hidden_layers": shape.num_hidden_layers,
            "num_attention_heads": shape.num_attention_heads,
            "num_key_value_heads": shape.num_key_value_heads,
            "head_dim": shape.head_dim,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": list(shape.mrope_section),
                "mrope_interleaved": True,
            },
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": shape.vision_depth,
            "hidden_size": shape.vision_hidden_size,
            "intermediate_size": shape.vision_intermediate_size,
            "num_heads": shape.vision_num_heads,
            "patch_size": shape.patch_size,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": shape.hidden_size,
            "num_position_embeddings": max(256, grid_side * grid_side),
            "deepstack_visual_indexes": list(shape.deepstack_visual_indexes),
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def save_processor(out: Path, tokenizer: Qwen2Tokenizer, shape: ModelShape) -> None:
    image_processor = QwenVLImageProcessor(
        patch_size=shape.patch_size,
        min_pixels=shape.min_pixels,
        max_pixels=shape.max_pixels,
        image_mean=(0.5,) * 3,
        image_std=(0.5,) * 3,
    )
    QwenVLProcessor(image_processor, tokenizer, chat_template=chat_template()).save_pretrained(out)


def build_tiny_model(out: str | Path, seed: int = 0) -> Path:
    """Write the tiny random checkpoint to ``out`` (created if needed) and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    save_processor(out, tokenizer, TINY_SHAPE)
    (out / "README.md").write_text(f"# Tiny Qwen3-VL (seed {seed})\n\n{NOTICE}\n", encoding="utf-8")
    return out
