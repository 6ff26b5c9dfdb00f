"""The onnx backend: an `export.onnx` directory on onnxruntime, on CPU or whatever provider is asked for.

It reuses the hf backend's conversation logic (`HFSession`: new-segment rendering, cache rewinding, M-RoPE
positions, verdict recording) and its processor; only the model is different. `HFSession` reads its model
through ``backend.model`` (``config``, ``model.get_image_features``, ``model.get_rope_index``) and
``backend.image_processor``: `OnnxModel` and `FixedGridImages` provide exactly those on onnxruntime.

The vision graph was exported for one image size (``manifest.extra["image_size"]``), so every image, the
frame and each tool observation, is resized to it first. The cost: the aspect ratio is not kept (a 4:3 frame
in a square grid is squeezed) and a small crop is upscaled to the full grid, so a crop costs as many image
tokens as the frame and gains no real resolution beyond its own pixels.

torch is still needed at runtime: the image processor and the verdict recorder are torch code (on CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, Qwen3VLConfig, Qwen3VLModel

from export.manifest import Manifest, ManifestError
from export.onnx.exporter import PROCESSOR_DIR
from station.backends.base import Backend, BackendError
from station.backends.hf.backend import STOP_TOKENS, VISION_TOKENS
from station.backends.hf.processor import QwenVLImageProcessor, QwenVLProcessor
from station.backends.hf.verdict import BranchTokens
from station.backends.onnx.session import OnnxSession
from tools.image import as_uint8, to_rgb

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def fit_image(image: Any, size: tuple[int, int]) -> np.ndarray:
    """``image`` as RGB uint8 of exactly ``size`` (height, width), resized as the processor resizes."""
    rgb = to_rgb(as_uint8(np.asarray(image)))
    if rgb.shape[:2] == tuple(size):
        return rgb
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).numpy()


class FixedGridImages:
    """The checkpoint's image processor behind a resize to the one size the vision graph takes."""

    def __init__(self, processor: QwenVLImageProcessor, size: tuple[int, int]):
        self._processor = processor
        self.size = size
        self.merge_size = processor.merge_size

    def __call__(self, images: list[Any]) -> Any:
        return self._processor([fit_image(image, self.size) for image in images])


class OnnxModel:
    """What `HFSession` needs of a model, on onnxruntime: image features, the rope index, the graphs."""

    def __init__(self, config: Qwen3VLConfig, sessions: dict[str, ort.InferenceSession], num_deepstack: int):
        self.config = config
        self.sessions = sessions
        self.num_deepstack = num_deepstack
        self.model = self  # HFSession calls backend.model.model.<method>
        # get_rope_index only reads the config (and the vision position helper): no weights needed
        self._rope = SimpleNamespace(config=config)
        self._rope.get_vision_position_ids = Qwen3VLModel.get_vision_position_ids.__get__(self._rope)

    def get_rope_index(self, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return Qwen3VLModel.get_rope_index(self._rope, **kwargs)

    def get_image_features(self, pixel_values: torch.Tensor, grid: torch.Tensor, **_: Any) -> Any:
        """Per image (the graph takes one), the merged features and each deepstack layer's features."""
        vision = self.sessions["vision"]
        per_image = pixel_values.numpy().reshape(len(grid), -1, pixel_values.shape[-1])
        outputs = [vision.run(None, {"pixel_values": patches}) for patches in per_image]
        return SimpleNamespace(
            pooler_output=np.concatenate([out[0] for out in outputs]),
            deepstack_features=[
                np.concatenate([out[1 + k] for out in outputs]) for k in range(self.num_deepstack)
            ],
        )


class OnnxBackend(Backend):
    """Qwen3-VL from an `export.onnx` directory: KV cache kept across rounds, greedy decoding.

    ``providers`` are onnxruntime execution providers in order of preference (`GPU_PROVIDERS` for a GPU box
    with onnxruntime-gpu). onnxruntime falls back to the CPU silently when a provider cannot start, so the
    providers really in use are read back (``providers_in_use``) and a fallback is logged as a warning.
    On a GPU, IO binding (keeping the KV cache in device memory between steps) would save the host copies the
    session makes each step; it is not used: on CPU it gains nothing.
    ``logits_processors`` (transformers `LogitsProcessor`s) run after the verdict recorder, as the hf
    backend's do.
    """

    name = "onnx"

    def __init__(
        self,
        export_dir: str | Path,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
        logits_processors: Sequence[LogitsProcessor] = (),
    ):
        self.export_dir = Path(export_dir)
        if not self.export_dir.is_dir():
            raise BackendError(f"ONNX export directory not found: {self.export_dir}")
        try:
            self.manifest = Manifest.read(self.export_dir)
            if self.manifest.format != "onnx":
                raise ManifestError(f"{self.export_dir} holds a {self.manifest.format!r} export, not onnx")
            self.manifest.check_files(self.export_dir)
            extra = self.manifest.extra
            size = tuple(extra["image_size"])
            graphs, num_deepstack = extra["graphs"], extra["num_deepstack"]
        except ManifestError as exc:
            raise BackendError(str(exc)) from exc
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.export_dir}/manifest.json is corrupted: missing {exc}") from exc
        processor_dir = self.export_dir / PROCESSOR_DIR
        try:
            self.processor = QwenVLProcessor.from_pretrained(processor_dir)
            config = Qwen3VLConfig.from_pretrained(processor_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"could not build the processor of {processor_dir}: {exc}") from exc
        self.tokenizer = self.processor.tokenizer
        self.image_processor = FixedGridImages(self.processor.image_processor, size)
        self.image_token_id = config.image_token_id
        self.stop_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        self.suppress_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
        self.branches = BranchTokens(self.tokenizer)
        self.logits_processors = list(logits_processors)
        self.device = torch.device("cpu")  # where HFSession puts pixels: the host, whatever runs the graphs
        self.requested_providers = list(providers)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            sessions = {
                role: ort.InferenceSession(
                    str(self.export_dir / name), options, providers=self.requested_providers
                )
                for role, name in graphs.items()
            }
        except Exception as exc:  # onnxruntime's errors are not RuntimeErrors
            raise BackendError(f"onnxruntime could not load {self.export_dir}: {exc}") from exc
        self.model = OnnxModel(config, sessions, num_deepstack)
        self.providers_in_use = sessions["decoder"].get_providers()
        if self.providers_in_use[0] != self.requested_providers[0]:
            log.warning(
                "onnxruntime runs %s on %s, not %s (asked for %s)",
                self.export_dir,
                self.providers_in_use[0],
                self.requested_providers[0],
                ", ".join(self.requested_providers),
            )

    @property
    def model_id(self) -> str:
        return f"{self.export_dir} ({self.manifest.quantization}, {self.providers_in_use[0]})"

    def open_session(self, tools: list[dict]) -> OnnxSession:
        return OnnxSession(self, tools)
