"""Checks and loading for local Qwen-VL checkpoints: safetensors only, never pickle, clear errors first.

Everything that can be wrong with a directory (missing, not a Qwen-VL model, pickle-only weights, a broken
adapter) is found before any weights are read and reported as a `BackendError` that names the directory and
what to do, rather than a transformers traceback.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
import transformers

from station.backends.base import BackendError

# model_type in config.json -> the transformers class that runs it
MODEL_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def check_model_dir(model_dir: Path) -> str:
    """The directory's model_type, once it is known to hold a supported model with safetensors weights."""
    if not model_dir.is_dir():
        raise BackendError(f"model directory not found: {model_dir}")
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise BackendError(f"{model_dir} has no config.json: not a transformers model directory")
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise BackendError(f"{config_file} is not a JSON object: {exc}") from exc
    if model_type not in MODEL_CLASSES:
        supported = ", ".join(MODEL_CLASSES)
        raise BackendError(
            f"{model_dir} holds a {model_type!r} model; the hf backend runs Qwen-VL models ({supported})"
        )
    if not any(model_dir.glob("*.safetensors")):
        pickles = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(
            p.name for p in model_dir.glob("*.pt")
        )
        found = f" (found {', '.join(pickles)}: pickle weights are refused)" if pickles else ""
        raise BackendError(f"{model_dir} has no .safetensors weights{found}")
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        if not (model_dir / name).is_file():
            raise BackendError(f"{model_dir} has no {name}: the processor cannot be built")
    return model_type


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise BackendError(f"unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA (as Qwen-VL is trained), float32 on CPU (bf16 matmuls are slow there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model(model_dir: Path, model_type: str, device: torch.device, dtype: torch.dtype):
    model_class = getattr(transformers, MODEL_CLASSES[model_type])
    transformers.utils.logging.disable_progress_bar()  # a station's log is no place for loading bars
    try:
        model = model_class.from_pretrained(
            model_dir, dtype=dtype, device_map=str(device), use_safetensors=True, local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"could not load the model in {model_dir}: {exc}") from exc
    if "mm_encoder_outputs" not in inspect.signature(model.forward).parameters:
        # without pre-encoded images a cached round would re-encode every image or, worse, drop the new ones
        raise BackendError(
            f"transformers {transformers.__version__} cannot take pre-encoded images (mm_encoder_outputs), "
            "which the KV-cache continuation needs; use transformers 5.23 or newer"
        )
    return model.eval()


def check_adapter_dir(adapter_dir: Path) -> None:
    """A PEFT adapter directory with safetensors weights (PEFT would fall back to a pickled .bin)."""
    if not adapter_dir.is_dir():
        raise BackendError(f"adapter directory not found: {adapter_dir}")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise BackendError(f"{adapter_dir} has no adapter_config.json: not a PEFT adapter")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise BackendError(f"{adapter_dir} has no adapter_model.safetensors (pickle adapters are refused)")


def apply_adapter(model, adapter_dir: Path):
    """Merge a PEFT LoRA adapter into the weights: decoding then costs what the base model costs."""
    from peft import PeftModel  # only adapters need peft

    try:
        adapted = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False, local_files_only=True)
        return adapted.merge_and_unload().eval()
    except Exception as exc:  # peft reports a mismatched adapter with many exception types
        raise BackendError(
            f"adapter {adapter_dir} does not fit the model: {type(exc).__name__}: {exc}"
        ) from exc
