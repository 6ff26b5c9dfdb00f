"""A model behind any OpenAI-compatible chat server (vLLM, llama.cpp server, SGLang).

One GPU server can then serve many stations, or a teacher model too large for the edge box. The server
renders the conversation with the model's own chat template, so it must be started with Qwen3-VL's template
(the one the model ships; `station/protocol/qwen3_vl_chat_template.jinja`) and must support:

- image parts (``image_url`` with base64 data URLs) in ``user`` AND ``tool`` messages: tool results carry
  crops and enhanced views, which Qwen3-VL's template renders inside ``<tool_response>``. This goes beyond
  the OpenAI spec (OpenAI's own API refuses it, llama-cpp-python's chat handler takes images only in user
  messages, vLLM issue #43203 reports a model whose renderer refuses them), so check a server with one crop
  round before relying on it; an image-bearing request it refuses comes back as a BackendError;
- ``tools`` in the request, rendered by the template as the ``# Tools`` system block (llama.cpp: ``--jinja``).
  vLLM answers a request with tools by choosing ``tool_choice="auto"``, which it refuses unless started with
  ``--enable-auto-tool-choice --tool-call-parser hermes``; without a parser pass
  ``extra_body={"tool_choice": "none"}`` (tools are still rendered) and the calls come back as raw text;
- ``logprobs`` / ``top_logprobs`` on chat completions for ``verdict_prob`` (or build with ``logprobs=False``).

Sessions are stateless: every round sends the whole conversation, and the server's prefix cache (vLLM
``--enable-prefix-caching``) is what avoids recomputing it. At the deadline the client drops the connection;
vLLM cancels requests whose client went away, so a missed deadline does not keep its GPU busy.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from collections import deque
from typing import Literal

import cv2
import numpy as np

from station.backends.base import Backend, BackendError, FinishReason, Generation, Session
from station.protocol.turns import ToolCall, ToolCalls, think_block
from tools.image import as_uint8

ImageFormat = Literal["png", "jpeg"]

_JPEG_QUALITY = 95
# Where the verdict's value starts: right after the opening quote of "anomaly"'s value.
_VERDICT_AT = re.compile(r'<answer>\s*\{\s*"anomaly"\s*:\s*"')
_VERDICT_VALUE = re.compile(r"(yes|no)(?![a-z])", re.IGNORECASE)


class OpenAIBackend(Backend):
    """A model served over the OpenAI chat-completions API.

    ``timeout_s`` bounds a request when the loop gives no deadline. ``extra_body`` is merged into every
    request, for server-specific settings (``tool_choice``, vLLM's ``top_k`` or ``mm_processor_kwargs``).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        temperature: float = 0.0,
        image_format: ImageFormat = "png",
        send_tools: bool = True,
        logprobs: bool = True,
        top_logprobs: int = 10,
        extra_body: dict | None = None,
    ):
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        try:
            import openai
        except ImportError as exc:  # the station runs without it unless this backend is chosen
            raise BackendError(
                "the openai backend needs the `openai` package: pip install 'indus-station[openai]'"
            ) from exc
        self._openai = openai
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.image_format = image_format
        self.send_tools = send_tools
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.extra_body = extra_body
        # No client-side retries: a retry rarely fits the part's deadline, and the loop fails safe instead.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout_s,
            max_retries=0,
        )

    @property
    def model_id(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def open_session(self, tools: list[dict]) -> Session:
        return OpenAISession(self, tools)

    def close(self) -> None:
        self._client.close()

    def complete(self, request: dict, timeout: float) -> dict:
        """POST one chat completion and return the reply's JSON object; every failure is a BackendError.

        The body is decoded here rather than by the client's models so a malformed reply is reported as
        such and server extensions (``timings``, ``reasoning_content``) stay readable.
        """
        errors = self._openai
        where = f"{self.base_url} ({self.model})"
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                **request, extra_body=self.extra_body, timeout=timeout
            )
            body = raw.content
        except errors.APITimeoutError as exc:
            raise BackendError(f"{where} did not answer within {timeout:.3f} s") from exc
        except errors.APIConnectionError as exc:
            raise BackendError(f"cannot reach {where}: {exc.__cause__ or exc}") from exc
        except errors.APIStatusError as exc:
            raise BackendError(f"{where} answered HTTP {exc.status_code}: {_status_detail(exc)}") from exc
        except errors.OpenAIError as exc:
            raise BackendError(f"request to {where} failed: {exc}") from exc
        try:
            reply = json.loads(body)
        except ValueError as exc:
            raise BackendError(f"{where} sent a reply that is not JSON: {body[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise BackendError(f"{where} sent a reply that is not a JSON object: {body[:200]!r}")
        return reply


def _status_detail(exc: Exception) -> str:
    """The server's own error message (vLLM and llama.cpp put it in the JSON body), else the body text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:200]
    return str(exc)


class OpenAISession(Session):
    """One conversation; keeps nothing on the server, only the encoded images so each is encoded once."""

    def __init__(self, backend: OpenAIBackend, tools: list[dict]):
        self.backend = backend
        self.tools = tools
        # id(array) -> (array, data URL); the array is held so its id cannot be reused by another image.
        self._urls: dict[int, tuple[np.ndarray, str]] = {}

    def generate(
        self, messages: list[dict], *, max_new_tokens: int, deadline: float | None = None
    ) -> Generation:
        backend = self.backend
        timeout = backend.timeout_s
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError("the deadline passed before the request could be sent")
            # httpx applies it per phase (connect, send, wait for the reply); on a non-streamed completion
            # the wait dominates, and the loop's own deadline covers a server that trickles its reply.
            timeout = min(timeout, remaining)
        request: dict = {
            "model": backend.model,
            "messages": self.to_openai(messages),
            "max_tokens": max_new_tokens,
            "temperature": backend.temperature,
        }
        if backend.send_tools and self.tools:
            request["tools"] = self.tools
        if backend.logprobs:
            request["logprobs"] = True
            request["top_logprobs"] = backend.top_logprobs
        start = time.monotonic()
        reply = backend.complete(request, timeout)
        return read_reply(reply, wall_s=time.monotonic() - start)

    def to_openai(self, messages: list[dict]) -> list[dict]:
        """The protocol's messages in the chat-completions shape.

        Call ids are numbered through the conversation, so every round sends the same prefix (the prompt
        cache keeps working), and each tool message answers the next unanswered call in order.
        """
        out: list[dict] = []
        pending: deque[str] = deque()
        n_calls = 0
        for message in messages:
            role = message.get("role")
            if role in ("system", "user"):
                out.append({"role": role, "content": self._content(message.get("content", ""))})
            elif role == "assistant":
                entry: dict = {"role": "assistant", "content": self._content(message.get("content") or "")}
                calls = message.get("tool_calls") or []
                if calls:
                    entry["tool_calls"] = [_call_entry(c, f"call_{n_calls + i}") for i, c in enumerate(calls)]
                    n_calls += len(calls)
                    pending = deque(c["id"] for c in entry["tool_calls"])
                out.append(entry)
            elif role == "tool":
                if not pending:
                    raise ValueError("a tool message follows no unanswered tool call")
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": pending.popleft(),
                        "content": self._content(message.get("content", "")),
                    }
                )
            else:
                raise ValueError(f"unknown message role {role!r}")
        return out

    def _content(self, content: str | list[dict]) -> str | list[dict]:
        if isinstance(content, str):
            return content
        parts = []
        for part in content:
            if part.get("type") == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": self._data_url(part["image"])}})
            else:
                raise ValueError(f"unsupported content part {part.get('type')!r}")
        return parts

    def _data_url(self, image: np.ndarray) -> str:
        cached = self._urls.get(id(image))
        if cached is not None and cached[0] is image:
            return cached[1]
        url = encode_image(image, self.backend.image_format)
        self._urls[id(image)] = (image, url)
        return url


def encode_image(image: np.ndarray, image_format: ImageFormat = "png") -> str:
    """An RGB (or grey) frame as a base64 data URL; OpenCV encodes BGR, hence the swap."""
    pixels = as_uint8(image)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode(f".{image_format}", pixels, params)
    if not ok:
        raise ValueError(f"could not encode a {pixels.shape} image as {image_format}")
    return f"data:image/{image_format};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


def _call_entry(call: dict, call_id: str) -> dict:
    function = call["function"]
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}


def read_reply(reply: dict, *, wall_s: float) -> Generation:
    """A chat-completions reply as one protocol turn and what it cost."""
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = reply.get("error")
        detail = f": {error.get('message', error) if isinstance(error, dict) else error}" if error else ""
        raise BackendError(f"the server's reply has no choices{detail}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise BackendError("the server's reply has no message")
    finish: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"

    # llama.cpp's server reports its prompt time; the rest of the wait (decoding, network, queue) is decode.
    prefill_s = _number(reply.get("timings"), "prompt_ms") / 1000.0
    logprobs = choice.get("logprobs")
    return Generation(
        text=turn_text(message),
        prefill_tokens=int(_number(reply.get("usage"), "prompt_tokens")),
        generated_tokens=int(_number(reply.get("usage"), "completion_tokens")),
        prefill_s=prefill_s,
        decode_s=max(wall_s - prefill_s, 0.0),
        finish_reason=finish,
        verdict_prob=verdict_prob(logprobs.get("content")) if isinstance(logprobs, dict) else None,
    )


def _number(section: object, key: str) -> float:
    """A usage or timing figure; servers omit or null the ones they do not track."""
    value = section.get(key) if isinstance(section, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def turn_text(message: dict) -> str:
    """The assistant turn as the model wrote it, in the protocol's form, whatever the server parsed out.

    A hermes tool parser moves the calls to ``tool_calls`` (and a reasoning parser the think block to
    ``reasoning_content``); putting them back the way the chat template renders them gives the same text a
    server without parsers returns, so ``parse_turn`` reads both alike.
    """
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise BackendError(f"the reply's content is not text: {type(content).__name__}")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    entries = message.get("tool_calls") or []
    if not reasoning and not entries:
        return content
    head = content.strip()
    if isinstance(reasoning, str) and reasoning.strip():
        think = think_block(reasoning.strip("\n"))
        head = f"{think}\n{head}" if head else think
    if not entries:
        return head
    return ToolCalls(calls=tuple(_reply_call(entry) for entry in entries), content=head).text


def _reply_call(entry: object) -> ToolCall:
    function = entry.get("function") if isinstance(entry, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise BackendError(f"the reply holds a malformed tool call: {entry!r:.200}")
    arguments = function.get("arguments")
    if arguments is None or isinstance(arguments, dict):
        return ToolCall(name, arguments or {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    # Valid arguments render as the template's tojson; anything else stays verbatim so the parser reports it.
    return ToolCall(name, parsed) if isinstance(parsed, dict) else ToolCall(name, {}, raw_arguments=arguments)


def verdict_prob(tokens: object) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the token where the answer's verdict value starts, from top_logprobs.

    The tokenizer may merge the opening quote (or a space) into the verdict token, so candidates are
    compared after that shared prefix. A side missing from the top candidates counts as zero; None when the
    reply has no logprobs or no answer.
    """
    if not isinstance(tokens, list) or not tokens:
        return None
    if not all(isinstance(t, dict) and isinstance(t.get("token"), str) for t in tokens):
        return None
    text = "".join(t["token"] for t in tokens)
    starts = list(_VERDICT_AT.finditer(text))
    if not starts:
        return None
    at = starts[-1].end()
    offset = 0
    for entry in tokens:
        if offset + len(entry["token"]) > at:
            break
        offset += len(entry["token"])
    else:
        return None  # generation stopped right before the verdict
    prefix = entry["token"][: at - offset]
    mass = {"yes": 0.0, "no": 0.0}
    seen: set[str] = set()
    for candidate in [entry, *(entry.get("top_logprobs") or [])]:
        if not isinstance(candidate, dict):
            continue
        token, logprob = candidate.get("token"), candidate.get("logprob")
        if not isinstance(token, str) or token in seen or not isinstance(logprob, (int, float)):
            continue
        seen.add(token)
        value = _VERDICT_VALUE.match(token[len(prefix) :]) if token.startswith(prefix) else None
        if value:
            mass[value.group(1).lower()] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None
