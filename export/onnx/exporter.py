"""Qwen3-VL to three ONNX graphs: vision encoder, token embedding, decoder with KV cache and deepstack inputs.

Why three graphs (NOTES): the vision encoder has data-dependent splits that only the TorchScript exporter can
freeze, and only for one fixed image grid; the decoder needs dynamic batch, sequence and past lengths, which
the dynamo exporter handles. The host scatters image features into the ``<|image_pad|>`` embeddings and
computes the M-RoPE positions (`station.backends.onnx`), exactly as the hf backend does for its cached rounds.

The decoder takes the deepstack features dense, one ``(batch, sequence, hidden)`` slab per deepstack layer
with zeros at text positions, instead of transformers' ``visual_pos_masks`` + packed features: adding a zero
is exact, and a boolean-mask scatter would be a data-dependent shape in the graph.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import DynamicCache, Qwen3VLForConditionalGeneration

from export.manifest import Manifest, package_versions
from station.backends.base import BackendError
from station.backends.hf.loading import check_model_dir
from station.backends.hf.processor import QwenVLProcessor, smart_resize

log = logging.getLogger(__name__)

Quant = Literal["none", "int8", "fp16"]
VISION, EMBED, DECODER = "vision.onnx", "embed.onnx", "decoder.onnx"
PROCESSOR_DIR = "processor"
OPSET = 18


class VisionEncoder(nn.Module):
    """Patches of one image of the fixed grid -> merged features and the deepstack features."""

    def __init__(self, model: Qwen3VLForConditionalGeneration, grid: list[int]):
        super().__init__()
        self.inner = model.model
        self.register_buffer("grid", torch.tensor([grid]), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.inner.get_image_features(pixel_values, self.grid, return_dict=True)
        return (out.pooler_output[0], *(feats[0] for feats in out.deepstack_features))


class Embedder(nn.Module):
    def __init__(self, model: Qwen3VLForConditionalGeneration):
        super().__init__()
        self.embed = model.model.language_model.embed_tokens

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)


def _dense_deepstack(hidden_states: torch.Tensor, _mask: None, embeds: torch.Tensor) -> torch.Tensor:
    return hidden_states + embeds


class Decoder(nn.Module):
    """One step (prefill or decode) of the language model over a flat past KV."""

    def __init__(self, model: Qwen3VLForConditionalGeneration):
        super().__init__()
        self.model = model
        self.text = model.model.language_model
        self.text._deepstack_process = _dense_deepstack  # see the module docstring

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        deepstack: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        cache = DynamicCache(config=self.text.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        hidden = self.text(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            deepstack_visual_embeds=list(deepstack.unbind(0)),
        ).last_hidden_state
        logits = self.model.lm_head(hidden)
        present = [t for layer in cache.layers for t in (layer.keys, layer.values)]
        return (logits, *present)


def default_image_size(processor: QwenVLProcessor) -> tuple[int, int]:
    """The largest square the checkpoint's pixel bounds allow, capped at 768 px (576 tokens for Qwen3-VL)."""
    images = processor.image_processor
    side = min(768, int(images.max_pixels**0.5))
    factor = images.patch_size * images.merge_size
    return smart_resize(side, side, factor, images.min_pixels, images.max_pixels)


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    quant: Quant = "none",
    *,
    image_size: tuple[int, int] | None = None,
) -> Manifest:
    """Write the three graphs, the processor and ``manifest.json`` to ``out_dir``; returns the manifest.

    ``image_size`` (height, width) is the one image size the vision graph takes; the backend resizes every
    image (frame and tool observations) to it. Default: `default_image_size`.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if quant not in ("none", "int8", "fp16"):
        raise ValueError(f"quant must be none, int8 or fp16, got {quant!r}")
    if check_model_dir(model_dir) != "qwen3_vl":
        raise BackendError(f"{model_dir}: only dense Qwen3-VL checkpoints export to ONNX (deepstack layout)")
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    processor = QwenVLProcessor.from_pretrained(model_dir)
    images = processor.image_processor
    height, width = image_size or default_image_size(processor)
    factor = images.patch_size * images.merge_size
    if smart_resize(height, width, factor, images.min_pixels, images.max_pixels) != (height, width):
        raise ValueError(
            f"image_size {height}x{width} must be multiples of {factor} within the processor's pixel bounds"
        )
    model = Qwen3VLForConditionalGeneration.from_pretrained(
        model_dir,
        dtype=torch.float32,
        use_safetensors=True,
        local_files_only=True,
        attn_implementation="eager",
    ).eval()
    pixels = images(torch.zeros(height, width, 3, dtype=torch.uint8).numpy())
    grid = pixels["image_grid_thw"][0].tolist()
    text = model.config.text_config
    n_deepstack = len(model.config.vision_config.deepstack_visual_indexes)

    with torch.inference_mode(False), torch.no_grad():
        _export_vision(
            VisionEncoder(model, grid).eval(), pixels["pixel_values"], out_dir / VISION, n_deepstack
        )
        _export_embed(Embedder(model).eval(), out_dir / EMBED)
        _export_decoder(Decoder(model).eval(), text, n_deepstack, out_dir / DECODER)
    files = [VISION, EMBED, DECODER]
    if quant == "int8":
        _quantize_int8(out_dir / DECODER)
    elif quant == "fp16":
        for name in files:
            _to_fp16(out_dir / name)
    processor.save_pretrained(out_dir / PROCESSOR_DIR)
    shutil.copy(model_dir / "config.json", out_dir / PROCESSOR_DIR / "config.json")
    files += sorted(str(p.relative_to(out_dir)) for p in (out_dir / PROCESSOR_DIR).iterdir())
    manifest = Manifest.describe(
        out_dir,
        files,
        format="onnx",
        model_dir=model_dir,
        quantization=quant,
        exporter=package_versions("torch", "transformers", "onnx", "onnxruntime", "onnxscript"),
        extra={
            "image_size": [height, width],
            "image_grid_thw": grid,
            "opset": OPSET,
            "export_s": round(time.monotonic() - started, 2),
            "graphs": {"vision": VISION, "embed": EMBED, "decoder": DECODER},
            "num_layers": text.num_hidden_layers,
            "num_deepstack": n_deepstack,
        },
    )
    manifest.write(out_dir)
    log.info("exported %s to %s (%s) in %.1f s", model_dir, out_dir, quant, manifest.extra["export_s"])
    return manifest


def _export_vision(module: nn.Module, pixel_values: torch.Tensor, path: Path, n_deepstack: int) -> None:
    torch.onnx.export(
        module,
        (pixel_values,),
        str(path),
        dynamo=False,  # the dynamo exporter fails on the encoder's data-dependent split (NOTES)
        input_names=["pixel_values"],
        output_names=["image_embeds", *(f"deepstack_{i}" for i in range(n_deepstack))],
        opset_version=OPSET,
    )


def _export_embed(module: nn.Module, path: Path) -> None:
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        module,
        (torch.zeros(1, 4, dtype=torch.long),),
        dynamic_shapes=({0: batch, 1: seq},),
        input_names=["input_ids"],
        output_names=["inputs_embeds"],
        dynamo=True,
        opset_version=OPSET,
    )
    program.save(str(path))


def _export_decoder(module: Decoder, text, n_deepstack: int, path: Path) -> None:
    batch, seq, past = (torch.export.Dim(n) for n in ("batch", "sequence", "past"))
    b, s, p = 2, 3, 5  # example sizes; no dimension may be 0 or 1 here or the exporter specialises it
    kv = (b, text.num_key_value_heads, p, text.head_dim)
    past_kv = tuple(torch.randn(kv) for _ in range(2 * text.num_hidden_layers))
    example = (
        torch.randn(b, s, text.hidden_size),
        torch.ones(b, p + s, dtype=torch.long),
        torch.arange(p, p + s).expand(4, b, s).contiguous(),
        torch.zeros(n_deepstack, b, s, text.hidden_size),
        *past_kv,
    )
    names = [f"past_{kind}_{layer}" for layer in range(text.num_hidden_layers) for kind in ("key", "value")]
    dynamic = (
        {0: batch, 1: seq},
        {0: batch, 1: torch.export.Dim.DYNAMIC},  # past + sequence,
        {1: batch, 2: seq},
        {1: batch, 2: seq},
        tuple({0: batch, 2: past} for _ in past_kv),  # the *past varargs
    )
    program = torch.onnx.export(
        module,
        example,
        dynamic_shapes=dynamic,
        input_names=["inputs_embeds", "attention_mask", "position_ids", "deepstack", *names],
        output_names=["logits", *(n.replace("past_", "present_") for n in names)],
        dynamo=True,
        opset_version=OPSET,
    )
    program.save(str(path))


def _quantize_int8(path: Path) -> None:
    """Dynamic int8 weights on the decoder's matmuls; activations stay float (no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(".fp32.onnx")
    path.rename(tmp)
    quantize_dynamic(tmp, path, weight_type=QuantType.QInt8)
    tmp.unlink()


def _to_fp16(path: Path) -> None:
    """Float16 weights and activations with float32 inputs and outputs, so the host code is the same."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save(model, str(path))
