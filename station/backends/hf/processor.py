"""Qwen-VL image + text processing without torchvision, PIL or a video processor.

transformers implements Qwen2-VL's image preprocessing on torchvision or PIL, and Qwen-VL processors insist on
a video processor that needs torchvision; none of them can be installed next to CPU torch here (NOTES). The
same arithmetic in plain torch serves every Qwen-VL checkpoint: a real Qwen3-VL-8B directory and the tiny test
model load through `QwenVLProcessor.from_pretrained` alike. `AutoProcessor` must not be used for such
checkpoints: without a video processor it silently returns just the tokenizer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BatchFeature, Qwen3VLProcessor
from transformers.image_processing_base import ImageProcessingMixin

from tools.image import as_uint8, to_rgb

PREPROCESSOR_CONFIG = "preprocessor_config.json"
# Defaults of transformers' Qwen2VLImageProcessor, for configs that leave a value out.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = 3  # PIL's code for bicubic, the only resampling Qwen-VL checkpoints use


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: sides multiples of ``factor``, area within the pixel bounds, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio above 200: {width}x{height}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class QwenVLImageProcessor(ImageProcessingMixin):
    """Qwen2-VL's image preprocessing (the one Qwen2.5-VL and Qwen3-VL use) in plain torch.

    Same steps and arithmetic as transformers' Qwen2VLImageProcessor on CPU, its default: smart resize with
    torch's antialiased bicubic kernel on uint8 values (the kernel torchvision calls for uint8 bicubic on
    CPU), then the fused rescale-and-normalise, then patches of ``temporal_patch_size`` copies ordered by
    merge window. It serialises as that class, so a checkpoint written with it loads with the standard
    processor wherever torchvision is available. (qwen-vl-utils resizes with PIL's bicubic instead, which
    differs by a few grey levels at sharp edges.)
    """

    model_input_names = ["pixel_values", "image_grid_thw"]  # noqa: RUF012 - transformers reads it per class

    def __init__(
        self,
        *,
        patch_size: int = 14,
        temporal_patch_size: int = 2,
        merge_size: int = 2,
        min_pixels: int = 56 * 56,
        max_pixels: int = 28 * 28 * 1280,
        image_mean: tuple[float, ...] = CLIP_MEAN,
        image_std: tuple[float, ...] = CLIP_STD,
        rescale_factor: float = 1 / 255,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.temporal_patch_size = temporal_patch_size
        self.merge_size = merge_size
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.rescale_factor = rescale_factor

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: int | None) -> QwenVLImageProcessor:
        """Read a Qwen2VLImageProcessor(Fast) config, old (min/max_pixels) or new (size) style."""
        for flag in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
            if config.get(flag, True) is not True:
                raise ValueError(f"{flag}=false is not supported by this image processor")
        if config.get("resample", BICUBIC) != BICUBIC:
            raise ValueError(f"resample={config['resample']} is not supported (bicubic only)")
        size = config.get("size") or {}
        kwargs: dict[str, Any] = {
            "min_pixels": size.get("shortest_edge", config.get("min_pixels")),
            "max_pixels": size.get("longest_edge", config.get("max_pixels")),
        }
        for key in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"):
            kwargs[key] = config.get(key)
        kwargs["rescale_factor"] = config.get("rescale_factor")
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": "Qwen2VLImageProcessor",
            "patch_size": self.patch_size,
            "temporal_patch_size": self.temporal_patch_size,
            "merge_size": self.merge_size,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "rescale_factor": self.rescale_factor,
            "do_resize": True,
            "do_rescale": True,
            "do_normalize": True,
            "do_convert_rgb": True,
            "resample": BICUBIC,
        }

    def fetch_images(self, images: Any) -> Any:
        """Images arrive as arrays; nothing to download."""
        return images

    def num_image_tokens(self, height: int, width: int) -> int:
        """Tokens one image of this size costs in the language model."""
        h, w = smart_resize(
            height, width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels
        )
        return (h // self.patch_size) * (w // self.patch_size) // self.merge_size**2

    def __call__(self, images: Any, return_tensors: str | None = "pt", **_: Any) -> BatchFeature:
        """``pixel_values`` (patches x features) and ``image_grid_thw`` for one image or a (nested) list.

        Images are HxW or HxWxC arrays (RGB, grey or RGBA; anything ``np.asarray`` turns into one, PIL
        included). Other processor kwargs are accepted and ignored, as TRL and ProcessorMixin pass them.
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r}: only torch tensors are produced")
        patches, grids = zip(*(self._one(img) for img in _flatten(images)), strict=True)
        return BatchFeature(
            {"pixel_values": torch.cat(patches), "image_grid_thw": torch.tensor(grids, dtype=torch.long)}
        )

    def _one(self, image: Any) -> tuple[torch.Tensor, list[int]]:
        rgb = to_rgb(as_uint8(np.asarray(image)))
        height, width = rgb.shape[:2]
        factor = self.patch_size * self.merge_size
        h, w = smart_resize(height, width, factor, self.min_pixels, self.max_pixels)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1) * (1.0 / self.rescale_factor)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1) * (1.0 / self.rescale_factor)
        x = (x.float() - mean) / std
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = h // p, w // p
        x = x.reshape(1, 3, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1).reshape(gh * gw, 3 * t * p * p)
        return x, [1, gh, gw]


def _flatten(images: Any) -> list:
    if isinstance(images, (list, tuple)):
        return [img for item in images for img in _flatten(item)]
    return [images]


class QwenVLProcessor(Qwen3VLProcessor):
    """Qwen3-VL's processor with only an image processor and a tokenizer (no video processor).

    Works for Qwen2.5-VL checkpoints too: both expand ``<|image_pad|>`` to grid/merge² tokens and mark them in
    ``mm_token_type_ids``. Reload a checkpoint with ``QwenVLProcessor.from_pretrained``.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model_dir: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> QwenVLProcessor:
        """Load from a local checkpoint; ``min_pixels``/``max_pixels`` override the checkpoint's bounds."""
        model_dir = Path(model_dir)
        config = json.loads((model_dir / PREPROCESSOR_CONFIG).read_text(encoding="utf-8"))
        image_processor = QwenVLImageProcessor.from_config(
            config, min_pixels=min_pixels, max_pixels=max_pixels
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        return cls(image_processor, tokenizer, chat_template=tokenizer.chat_template)

    def save_pretrained(self, save_directory: str | Path, **_: Any) -> list[str]:  # type: ignore[override]
        """Write the layout a real Qwen-VL checkpoint has: tokenizer files and preprocessor_config.json."""
        save_directory = Path(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        self.image_processor.to_json_file(save_directory / PREPROCESSOR_CONFIG)
        return [str(save_directory / PREPROCESSOR_CONFIG)]
