"""The gguf backend: an `indus export gguf` directory (text model + mmproj) on llama-cpp-python.

One `llama_cpp.Llama` holds the text model and its single KV cache; an mtmd context (llama.cpp's multimodal
library, driven through its C API) holds the vision projector. llama-cpp-python's own `MTMDChatHandler`
is not used: it clears the context and re-encodes every image on every call, and refuses images in tool
messages (NOTES), so the session drives mtmd itself and keeps the cache across rounds.

Images: llama.cpp sizes Qwen-VL images between its own token bounds and rounds sizes half-up, while the
checkpoint's processor uses its ``min/max_pixels`` and Python's half-to-even rounding, which gives some
images another grid (80x60 px: 2x2 merged patches in transformers, 3x2 in llama.cpp). Each image is
therefore resized here exactly as the hf processor resizes it (same target size, same antialiased bicubic
kernel on uint8), so llama.cpp receives it already aligned and leaves it as it is: the model sees the pixels
and the image tokens it was trained on. The bounds come from the manifest (`export.gguf.image_bounds`).

Only one conversation can live in the KV cache at a time: a session that finds another one's state there
starts its own from scratch (`owner`), and a lock serialises model calls from several threads.
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from export.manifest import Manifest, ManifestError
from station.backends.base import Backend, BackendError
from station.backends.hf.backend import STOP_TOKENS, VISION_TOKENS
from station.backends.hf.processor import smart_resize
from station.backends.hf.verdict import BranchTokens
from station.backends.hf.verdict import _byte_to_unicode as byte_to_unicode
from tools.image import as_uint8, to_rgb

if TYPE_CHECKING:
    from station.backends.gguf.session import GGUFSession

log = logging.getLogger(__name__)

GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


@llama_cpp.llama_log_callback
def _mtmd_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """mtmd and clip log to stderr by default, per image; here errors are errors and the rest is debug (its
    warnings are advice for llama.cpp's own image sizing, which this backend replaces)."""
    message = text.decode("utf-8", "replace").rstrip()
    if message:
        log.log(logging.ERROR if level == GGML_LOG_LEVEL_ERROR else logging.DEBUG, "mtmd: %s", message)


mtmd.mtmd_log_set(_mtmd_log, ctypes.c_void_p(0))
mtmd.mtmd_helper_log_set(_mtmd_log, ctypes.c_void_p(0))


class ImageBounds:
    """The checkpoint's image sizing (patch, merge, pixel bounds), applied before llama.cpp sees an image."""

    def __init__(self, patch_size: int, merge_size: int, min_pixels: int, max_pixels: int):
        self.patch_size, self.merge_size = patch_size, merge_size
        self.min_pixels, self.max_pixels = min_pixels, max_pixels

    @property
    def token_area(self) -> int:
        """Pixels per image token in the language model."""
        return (self.patch_size * self.merge_size) ** 2

    def token_limits(self) -> tuple[int, int]:
        """mtmd's image token bounds, wide enough never to resize an image `fit` has sized."""
        area = self.token_area
        return max(1, self.min_pixels // area), math.ceil(self.max_pixels / area)

    def fit(self, image: Any) -> np.ndarray:
        """``image`` as contiguous RGB uint8 at the size the hf processor would give it."""
        rgb = to_rgb(as_uint8(np.asarray(image)))
        height, width = rgb.shape[:2]
        try:
            h, w = smart_resize(
                height, width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels
            )
        except ValueError as exc:
            raise BackendError(f"image of {width}x{height} px cannot be inspected: {exc}") from exc
        if (h, w) == (height, width):
            return np.ascontiguousarray(rgb)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())


class GGUFTokenizer:
    """llama.cpp's tokenizer behind the few calls the station makes on a transformers tokenizer."""

    def __init__(self, llm: llama_cpp.Llama):
        self._llm = llm
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``, special tokens (``<|im_end|>``...) recognised as the template uses them."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return self._llm.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", "replace")

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for (a special token's text)."""
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
            if n >= 0:
                return buffer.raw[:n]
            size = -n

    def get_vocab(self) -> dict[str, int]:
        """Every token spelled in GPT-2's byte-level alphabet, as transformers spells a Qwen vocabulary (what
        `BranchTokens` looks tokens up in)."""
        table = byte_to_unicode()
        vocab: dict[str, int] = {}
        for token in range(self._llm.n_vocab()):
            vocab.setdefault("".join(table[b] for b in self.piece(token)), token)
        return vocab

    def single_token(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise BackendError(f"the GGUF vocabulary has no {text} token: not a Qwen-VL model")
        return ids[0]


class GGUFBackend(Backend):
    """Qwen3-VL from an `indus export gguf` directory: KV cache kept across rounds, greedy decoding.

    ``n_gpu_layers`` layers of the text model (-1: all) and the vision projector go to the GPU when
    llama-cpp-python was built with a GPU backend (CUDA, Metal, Vulkan...); otherwise everything runs on
    the CPU and `device` says so. ``n_threads`` defaults to llama-cpp-python's choice (half the cores to
    decode, all of them to prefill); on a CPU shared with another busy process, give fewer: llama.cpp's
    threads spin at each step and stall when one of them loses its core. ``n_ctx`` bounds the tokens of one
    conversation (images included); a conversation that outgrows it fails with a clear error.
    ``logits_processors`` (transformers `LogitsProcessor`s, on torch tensors) run after the verdict
    recorder, as the hf and onnx backends run theirs.
    """

    name = "gguf"

    def __init__(
        self,
        export_dir: str | Path,
        *,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        n_ctx: int = 8192,
        n_batch: int = 512,
        logits_processors: Sequence[LogitsProcessor] = (),
    ):
        self.export_dir = Path(export_dir)
        if not self.export_dir.is_dir():
            raise BackendError(f"GGUF export directory not found: {self.export_dir}")
        try:
            self.manifest = Manifest.read(self.export_dir)
            if self.manifest.format != "gguf":
                raise ManifestError(f"{self.export_dir} holds a {self.manifest.format!r} export, not gguf")
            self.manifest.check_files(self.export_dir)
            extra = self.manifest.extra
            model_path, mmproj_path = self.export_dir / extra["model"], self.export_dir / extra["mmproj"]
            self.images = ImageBounds(**extra["image_processor"])
        except ManifestError as exc:
            raise BackendError(str(exc)) from exc
        except KeyError as exc:
            raise BackendError(
                f"{self.export_dir}/manifest.json lacks {exc}: export it again with `indus export gguf`"
            ) from exc
        except TypeError as exc:
            raise BackendError(f"{self.export_dir}/manifest.json is corrupted: {exc}") from exc
        self.gpu = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
        if n_gpu_layers != 0 and not self.gpu:
            log.warning("llama-cpp-python was built without GPU offload: %s runs on the CPU", self.export_dir)
        self.n_gpu_layers = n_gpu_layers if self.gpu else 0
        try:
            self.llm = llama_cpp.Llama(
                str(model_path),
                n_gpu_layers=self.n_gpu_layers,
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:  # llama-cpp-python's "Failed to load model from file"
            raise BackendError(f"llama.cpp could not load {model_path}: {exc}") from exc
        self.mtmd_ctx = self._load_mmproj(mmproj_path)
        # The projector before the model it points into, also at interpreter exit (where a Llama left to
        # the garbage collector fails on llama.cpp functions already torn down).
        self._release = weakref.finalize(self, _release, self.llm, self.mtmd_ctx)
        self.tokenizer = GGUFTokenizer(self.llm)
        self.stop_ids = [self.tokenizer.single_token(t) for t in STOP_TOKENS]
        self.suppress_ids = [self.tokenizer.single_token(t) for t in VISION_TOKENS]
        self.branches = BranchTokens(self.tokenizer)  # reads the vocabulary once (1-2 s for a real one)
        self.logits_processors = list(logits_processors)
        self.lock = threading.Lock()  # one model call at a time: llama.cpp contexts are not thread-safe
        self.owner: GGUFSession | None = None  # the session whose conversation the KV cache holds

    def _load_mmproj(self, path: Path) -> Any:
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.gpu
        params.print_timings = False
        params.n_threads = self.llm.n_threads
        params.image_min_tokens, params.image_max_tokens = self.images.token_limits()
        ctx = mtmd.mtmd_init_from_file(str(path).encode(), self.llm.model, params)
        if ctx is None:
            self.llm.close()
            raise BackendError(f"llama.cpp could not load the vision projector {path}")
        if not mtmd.mtmd_support_vision(ctx) or not mtmd.mtmd_decode_use_mrope(ctx):
            mtmd.mtmd_free(ctx)
            self.llm.close()
            raise BackendError(f"{path} is not a Qwen-VL vision projector (no vision input or no M-RoPE)")
        return ctx

    @property
    def device(self) -> str:
        return f"GPU, {self.n_gpu_layers} layers" if self.gpu else "CPU"

    @property
    def model_id(self) -> str:
        return f"{self.export_dir} ({self.manifest.quantization}, {self.device})"

    def open_session(self, tools: list[dict]) -> GGUFSession:
        from station.backends.gguf.session import GGUFSession

        return GGUFSession(self, tools)

    def close(self) -> None:
        with self.lock:
            self.owner = None
            self.mtmd_ctx = None  # sessions check it: a closed backend is an error, not a crash
            self._release()


def _release(llm: llama_cpp.Llama, mtmd_ctx: Any) -> None:
    mtmd.mtmd_free(mtmd_ctx)
    llm.close()
