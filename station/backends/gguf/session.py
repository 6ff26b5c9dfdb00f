"""One conversation on the gguf backend: llama.cpp's KV cache kept across tool rounds, mtmd driven directly.

Each round the loop hands over the whole conversation. As in `HFSession`, what is new is the rendered prompt
minus the text the session already holds (earlier prompts, and each assistant turn as the tokens the model
generated): the tool responses with their images and the generation prompt. Only that segment is tokenised
(mtmd splits it into text chunks and image chunks, with ``<|vision_start|>``/``<|vision_end|>`` around each
image, exactly the ids the hf processor gives), and only its chunks are evaluated: text with `Llama.eval`,
images with ``mtmd_helper_eval_chunk_single``, which encodes the image and decodes its embeddings at M-RoPE
positions, together with the last generated token of the previous round, never evaluated when it was
sampled. A conversation that is not an extension of what the cache holds is cut back to the longest prefix
that is still the same text and images.

Positions are not tokens: with M-RoPE an image of WxH merged patches takes W*H cache cells but advances the
position by max(W, H), as transformers' rope index does. ``Llama.n_tokens`` is llama-cpp-python's position
counter (the next text token's position, as `MTMDChatHandler` keeps it too); the session counts tokens
separately, for the prefill accounting and for the context bound.

Decoding is greedy, with the hf backend's order of logits processing: vision tokens suppressed, then the
verdict recorder, then the caller's processors.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
import torch

from station.backends.base import BackendError, FinishReason, Generation, Session
from station.backends.hf.session import IM_END, IMAGE_PAD, VIDEO_PAD, _same_image, message_images
from station.backends.hf.verdict import VerdictRecorder
from station.protocol import render_chat

if TYPE_CHECKING:
    from station.backends.gguf.backend import GGUFBackend

IMAGE = f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"  # how the chat template renders an image


@dataclass(frozen=True)
class _Mark:
    """A point the cache can be cut back to: the end of a prefilled prompt or of a generated turn."""

    text_len: int  # characters of the rendered conversation
    n_tokens: int  # tokens accounted for, the pending one included
    n_pos: int  # the next position: everything before it is in the cache
    n_images: int
    pending: int | None = None  # the last generated token, not yet evaluated
    then: str = ""  # text that must follow (``<|im_end|>`` after a turn cut off by the token limit)


@dataclass
class _Chunks:
    """An mtmd chunk list, freed on exit."""

    handle: Any

    def __enter__(self) -> _Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        mtmd.mtmd_input_chunks_free(self.handle)

    def __iter__(self):
        for index in range(mtmd.mtmd_input_chunks_size(self.handle)):
            yield mtmd.mtmd_input_chunks_get(self.handle, index)


def _text_tokens(chunk: Any) -> list[int] | None:
    """A text chunk's token ids; None for an image chunk."""
    if mtmd.mtmd_input_chunk_get_type(chunk) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
        return None
    count = ctypes.c_size_t()
    pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
    return [pointer[i] for i in range(count.value)]


class GGUFSession(Session):
    """The model's side of one inspected part, holding its part of llama.cpp's KV cache between rounds."""

    def __init__(self, backend: GGUFBackend, tools: list[dict]):
        self._backend = backend
        self._tools = tools
        self._reset()

    def _reset(self) -> None:
        """Forget the conversation; the KV cache is cleared when this session next claims it."""
        self._text = ""
        self._images: list[Any] = []
        self._marks = [_Mark(0, 0, 0, 0)]
        if self._backend.owner is self:
            self._backend.owner = None

    def close(self) -> None:
        with self._backend.lock:
            self._reset()

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        start = time.monotonic()
        if deadline is not None and start >= deadline:
            return Generation(text="", finish_reason="deadline")
        backend = self._backend
        with backend.lock:
            if backend.mtmd_ctx is None:
                raise BackendError("the gguf backend is closed")
            if backend.owner is not self:  # another conversation is in the cache: start from scratch
                self._reset()
                backend.llm.reset()
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(backend.llm.ctx), True)
                backend.owner = self
            try:
                return self._generate(messages, max_new_tokens, deadline, start)
            except BackendError:
                self._reset()
                raise
            except (RuntimeError, ValueError, OSError) as exc:  # llama_decode failures are RuntimeErrors
                self._reset()  # the cache may hold a half-written step
                raise BackendError(f"gguf generation failed: {type(exc).__name__}: {exc}") from exc

    def _generate(
        self, messages: list[dict], max_new_tokens: int, deadline: float | None, start: float
    ) -> Generation:
        backend = self._backend
        llm = backend.llm
        prompt = render_chat(messages, self._tools, add_generation_prompt=True)
        images = message_images(messages)
        mark = self._rewind(prompt, images)
        segment, new_images = prompt[len(self._text) :], images[len(self._images) :]
        fed = 0
        with self._tokenize(segment, new_images) as chunks:
            n_new = sum(mtmd.mtmd_input_chunk_get_n_tokens(chunk) for chunk in chunks)
            n_prompt = mark.n_tokens + n_new
            if n_prompt >= llm.n_ctx():
                raise BackendError(
                    f"the conversation needs {n_prompt} tokens, the gguf backend's n_ctx is {llm.n_ctx()}"
                )
            pending = [mark.pending] if mark.pending is not None else []
            for chunk in chunks:
                if deadline is not None and time.monotonic() >= deadline:
                    self._rewind_to(mark)  # nothing half-evaluated stays in the cache
                    return Generation(text="", prefill_tokens=fed, finish_reason="deadline")
                tokens = _text_tokens(chunk)
                if tokens is None:
                    if pending:
                        llm.eval(pending)
                        fed, pending = fed + 1, []
                    fed += self._eval_image(chunk)
                else:
                    llm.eval(pending + tokens)
                    fed, pending = fed + len(pending) + len(tokens), []
        if pending:  # an empty segment: only the pending token is new
            llm.eval(pending)
            fed += 1
        prompt_pos = llm.n_tokens
        self._marks.append(_Mark(len(prompt), n_prompt, prompt_pos, len(images)))
        self._text, self._images = prompt, list(images)
        prefill_end = time.monotonic()
        generated, reason, verdict_prob = self._decode(n_prompt, max_new_tokens, deadline)
        end = time.monotonic()

        stopped = reason == "stop"
        turn = backend.tokenizer.decode(generated)
        self._text = prompt + turn
        self._marks.append(
            _Mark(
                len(self._text),
                n_prompt + len(generated),
                llm.n_tokens,
                len(images),
                pending=generated[-1],
                then="" if stopped else IM_END,
            )
        )
        return Generation(
            text=backend.tokenizer.decode(generated[:-1] if stopped else generated),
            prefill_tokens=fed,
            generated_tokens=len(generated),
            prefill_s=prefill_end - start,
            decode_s=end - prefill_end,
            finish_reason=reason,
            verdict_prob=verdict_prob,
        )

    def _decode(
        self, n_prompt: int, max_new_tokens: int, deadline: float | None
    ) -> tuple[list[int], FinishReason, float | None]:
        """Greedy tokens after the evaluated prompt; the last one is left pending (not evaluated)."""
        backend = self._backend
        llm = backend.llm
        recorder = VerdictRecorder(backend.tokenizer, backend.branches)
        n_vocab = llm.n_vocab()
        history = torch.zeros(1, n_prompt, dtype=torch.long)  # processors read only the generated part
        generated: list[int] = []
        while True:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            scores = torch.from_numpy(logits.astype(np.float32))[None]  # a copy: llama.cpp reuses its buffer
            scores[:, backend.suppress_ids] = -torch.inf
            ids = torch.cat([history, torch.tensor([generated], dtype=torch.long)], dim=1)
            for processor in (recorder, *backend.logits_processors):
                scores = processor(ids, scores)
            generated.append(int(scores[0].argmax()))
            if generated[-1] in backend.stop_ids:
                return generated, "stop", recorder.verdict_prob(generated)
            if deadline is not None and time.monotonic() >= deadline:
                return generated, "deadline", recorder.verdict_prob(generated)
            if len(generated) == max_new_tokens or n_prompt + len(generated) >= llm.n_ctx():
                return generated, "length", recorder.verdict_prob(generated)
            llm.eval(generated[-1:])

    def _tokenize(self, segment: str, images: list[Any]) -> _Chunks:
        """The segment as mtmd chunks: its text pieces and, between them, its images (resized as the hf
        processor resizes them)."""
        backend = self._backend
        pieces = segment.split(IMAGE)
        if len(pieces) - 1 != len(images) or IMAGE_PAD in segment.replace(IMAGE, "") or VIDEO_PAD in segment:
            raise BackendError(
                f"message text holds {IMAGE_PAD} or {VIDEO_PAD} of its own; the markers are reserved"
            )
        keep: list[Any] = []  # ctypes objects that must outlive mtmd_tokenize_from_parts
        bitmaps = []
        try:
            parts = []
            for index, piece in enumerate(pieces):
                if piece:
                    data = piece.encode("utf-8")
                    text = mtmd.mtmd_input_text()
                    text.text, text.text_len = data, len(data)
                    text.add_special, text.parse_special = False, True
                    keep.append(text)
                    parts.append(mtmd.mtmd_input_part(text=ctypes.pointer(text), bitmap=None))
                if index < len(images):
                    rgb = backend.images.fit(images[index])
                    data = (ctypes.c_uint8 * rgb.nbytes).from_buffer_copy(rgb)
                    bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], data)
                    if bitmap is None:
                        raise BackendError(f"mtmd could not take an image of shape {rgb.shape}")
                    bitmaps.append(bitmap)
                    parts.append(mtmd.mtmd_input_part(text=None, bitmap=bitmap))
            chunks = mtmd.mtmd_input_chunks_init()
            array = (ctypes.POINTER(mtmd.mtmd_input_part) * len(parts))(*map(ctypes.pointer, parts))
            status = mtmd.mtmd_tokenize_from_parts(backend.mtmd_ctx, chunks, array, len(parts), False)
            if status != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                raise BackendError(f"mtmd could not tokenize the conversation (status {status})")
            return _Chunks(chunks)
        finally:
            for bitmap in bitmaps:  # the chunks hold the preprocessed pixels: the bitmaps are done
                mtmd.mtmd_bitmap_free(bitmap)

    def _eval_image(self, chunk: Any) -> int:
        """Encode one image chunk and decode its embeddings at the next positions; returns its tokens."""
        llm = self._backend.llm
        new_pos = llama_cpp.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunk_single(
            self._backend.mtmd_ctx, llm.ctx, chunk, llm.n_tokens, 0, llm.n_batch, False, ctypes.byref(new_pos)
        )
        if status != 0:
            raise BackendError(f"mtmd could not evaluate an image (status {status})")
        llm.n_tokens = new_pos.value
        return mtmd.mtmd_input_chunk_get_n_tokens(chunk)

    def _rewind(self, prompt: str, images: list[Any]) -> _Mark:
        """Cut the cache back to the longest kept prefix of this conversation (all of it, normally)."""
        for index in range(len(self._marks) - 1, -1, -1):
            mark = self._marks[index]
            if mark.text_len == len(prompt) and mark.pending is None:
                continue  # nothing would be left to evaluate, so no fresh logits: go back one mark more
            if (
                prompt.startswith(self._text[: mark.text_len] + mark.then)
                and len(images) >= mark.n_images
                and all(map(_same_image, images[: mark.n_images], self._images[: mark.n_images]))
            ):
                break
        del self._marks[index + 1 :]
        self._rewind_to(mark)
        return mark

    def _rewind_to(self, mark: _Mark) -> None:
        llm = self._backend.llm
        if llm.n_tokens != mark.n_pos:
            memory = llama_cpp.llama_get_memory(llm.ctx)
            llama_cpp.llama_memory_seq_rm(memory, 0, mark.n_pos, -1)  # every cell from the mark's position on
            llm.n_tokens = mark.n_pos
        self._text = self._text[: mark.text_len]
        self._images = self._images[: mark.n_images]
