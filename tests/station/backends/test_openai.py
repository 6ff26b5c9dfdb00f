"""The openai backend against a fake OpenAI-compatible server on loopback that records what it is sent."""

from __future__ import annotations

import base64
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from station.backends.base import BackendError
from station.backends.openai import OpenAIBackend, encode_image, verdict_prob
from station.protocol import (
    SYSTEM_PROMPT,
    Answer,
    ToolCall,
    ToolCalls,
    assistant_message,
    opening_messages,
    parse_turn,
    render_chat,
    tool_message,
)
from tools.registry import Observation
from tools.toolkit import default_registry

pytest.importorskip("openai")  # the backend imports it lazily, so only the tests need it

TOOLS = default_registry().schemas()
CALLS = ToolCalls(
    calls=(ToolCall("crop", {"bbox": [100, 200, 300, 400]}), ToolCall("prior", {})),
    content="<think>\nThe left edge looks rough.\n</think>",
)


@dataclass
class Scripted:
    status: int = 200
    body: bytes | dict | None = None
    delay_s: float = 0.0


@dataclass
class FakeServer:
    """Answers each POST with the next scripted reply (the last one repeats) and keeps each request."""

    replies: list[Scripted] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def script(self, *replies: Scripted) -> None:
        self.replies[:] = replies


def chat_reply(
    content: str | None = "",
    *,
    tool_calls: list[dict] | None = None,
    finish_reason: str = "stop",
    logprobs: list[dict] | None = None,
    usage: dict | None = None,
    **message_extra: object,
) -> dict:
    message = {"role": "assistant", "content": content, **message_extra}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    choice: dict = {"index": 0, "message": message, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "qwen3-vl",
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if usage is None
        else usage,
    }


@pytest.fixture(scope="module")
def http_server() -> Iterator[FakeServer]:
    fake = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "json": json.loads(body)}
            )
            reply = fake.replies[min(len(fake.requests), len(fake.replies)) - 1]
            if reply.delay_s:
                fake.release.wait(reply.delay_s)
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up first (deadline test)
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_port}/v1"
    yield fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(http_server: FakeServer) -> Iterator[FakeServer]:
    """The shared server with a fresh script and record (one server and client per module keeps it fast)."""
    http_server.script(Scripted(body=chat_reply("<answer>{}</answer>")))
    http_server.requests.clear()
    yield http_server
    http_server.release.set()  # wake a handler still stalling for the deadline test
    http_server.release = threading.Event()


@pytest.fixture(scope="module")
def backend(http_server: FakeServer) -> Iterator[OpenAIBackend]:
    shared = OpenAIBackend(http_server.url, "m", api_key="EMPTY")
    yield shared
    shared.close()


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def decode(url: str) -> np.ndarray:
    header, data = url.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def conversation() -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    crop = rng.integers(0, 256, (16, 12), dtype=np.uint8)  # enhance-style grey view
    messages = opening_messages(frame, "bottle")
    messages.append(assistant_message(CALLS))
    messages.append(tool_message(Observation(tool="crop", data={"bbox_px": [4, 5, 12, 20]}, images=[crop])))
    messages.append(tool_message(Observation(tool="prior", data={"prior": "round glass bottle"})))
    return messages, frame, crop


def generate(backend: OpenAIBackend, messages: list[dict], **kwargs: object):
    with backend.open_session(TOOLS) as session:
        return session.generate(messages, max_new_tokens=kwargs.pop("max_new_tokens", 64), **kwargs)


def test_request_carries_the_conversation_in_the_openai_shape(server: FakeServer) -> None:
    messages, frame, crop = conversation()
    backend = OpenAIBackend(server.url, "qwen3-vl")
    generate(backend, messages, max_new_tokens=77)

    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer EMPTY"
    sent = request["json"]
    assert sent["model"] == "qwen3-vl"
    assert sent["max_tokens"] == 77
    assert sent["temperature"] == 0.0
    assert sent["logprobs"] is True and sent["top_logprobs"] == 10
    assert sent["tools"] == TOOLS

    system, user, assistant, crop_result, prior_result = sent["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["role"] == "user"
    assert user["content"][0]["type"] == "image_url"
    assert np.array_equal(decode(user["content"][0]["image_url"]["url"]), frame)
    assert user["content"][1] == {"type": "text", "text": "Product: bottle. Inspect this part for defects."}
    assert assistant == {
        "role": "assistant",
        "content": CALLS.content,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "crop", "arguments": '{"bbox": [100, 200, 300, 400]}'},
            },
            {"id": "call_1", "type": "function", "function": {"name": "prior", "arguments": "{}"}},
        ],
    }
    assert crop_result["role"] == "tool" and crop_result["tool_call_id"] == "call_0"
    assert crop_result["content"][0] == {"type": "text", "text": messages[3]["content"][0]["text"]}
    assert np.array_equal(decode(crop_result["content"][1]["image_url"]["url"]), crop)
    assert prior_result["tool_call_id"] == "call_1"
    assert [p["type"] for p in prior_result["content"]] == ["text"]

    # A server rendering Qwen3-VL's template sees exactly the prompt the station's protocol defines.
    assert render_chat(sent["messages"], TOOLS, True) == render_chat(messages, TOOLS, True)


def test_later_rounds_resend_the_same_prefix_and_number_calls_on(
    server: FakeServer, backend: OpenAIBackend
) -> None:
    messages, _, _ = conversation()
    with backend.open_session(TOOLS) as session:
        session.generate(messages, max_new_tokens=8)
        more = ToolCalls(calls=(ToolCall("enhance", {"mode": "clahe"}),))
        observation = Observation(
            tool="enhance", data={"mode": "clahe"}, images=[messages[3]["content"][1]["image"]]
        )
        session.generate([*messages, assistant_message(more), tool_message(observation)], max_new_tokens=8)
    first, second = (r["json"]["messages"] for r in server.requests)
    assert second[: len(first)] == first
    assert second[-2]["tool_calls"][0]["id"] == second[-1]["tool_call_id"] == "call_2"
    assert second[-2]["content"] == ""


def test_structured_and_raw_tool_calls_read_as_the_same_turn(
    server: FakeServer, backend: OpenAIBackend
) -> None:
    structured = chat_reply(
        CALLS.content + "\n",  # a hermes parser leaves the text before the first <tool_call>
        tool_calls=[
            {
                "id": "a",
                "type": "function",
                "function": {"name": "crop", "arguments": '{"bbox":[100,200,300,400]}'},
            },
            {"id": "b", "type": "function", "function": {"name": "prior", "arguments": "{}"}},
        ],
        finish_reason="tool_calls",
    )
    raw = chat_reply(CALLS.text)
    server.script(Scripted(body=structured), Scripted(body=raw))
    messages, _, _ = conversation()
    from_structured = generate(backend, messages[:2])
    from_raw = generate(backend, messages[:2])

    assert from_structured.text == from_raw.text == CALLS.text
    assert parse_turn(from_structured.text) == parse_turn(from_raw.text) == parse_turn(CALLS.text)
    assert from_structured.finish_reason == from_raw.finish_reason == "stop"


def test_structured_calls_without_content_and_with_bad_arguments(
    server: FakeServer, backend: OpenAIBackend
) -> None:
    server.script(
        Scripted(
            body=chat_reply(
                None, tool_calls=[{"type": "function", "function": {"name": "crop", "arguments": "{oops"}}]
            )
        )
    )
    text = generate(backend, conversation()[0][:2]).text
    assert text == '<tool_call>\n{"name": "crop", "arguments": {oops}\n</tool_call>'
    assert parse_turn(text).code == "bad_json"  # the model's mistake reaches the loop as a parse error


def test_a_reasoning_parser_reply_gets_its_think_block_back(
    server: FakeServer, backend: OpenAIBackend
) -> None:
    answer = Answer(anomaly=False, confidence=0.1, content="<think>\nClean surface.\n</think>")
    server.script(
        Scripted(body=chat_reply("\n\n" + answer.answer_text, reasoning_content="\nClean surface.\n"))
    )
    text = generate(backend, conversation()[0][:2]).text
    assert text == answer.text
    assert parse_turn(text) == answer


def answer_tokens(verdict_token: str, candidates: dict[str, float]) -> list[dict]:
    """Logprobs for `<answer>{"anomaly": "<verdict>", ...}</answer>` split the way a BPE might."""
    before = ["<think>\nok\n</think>\n", "<answer>", '{"', "anomaly", '":']
    after = ['",', ' "type', '": null', ', "bbox": null, "confidence": 0.9}', "</answer>"]
    tokens = [{"token": t, "logprob": -0.01, "top_logprobs": []} for t in before]
    tokens.append(
        {
            "token": verdict_token,
            "logprob": candidates[verdict_token],
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in candidates.items()],
        }
    )
    tokens += [{"token": t, "logprob": -0.01, "top_logprobs": []} for t in after]
    return tokens


def test_verdict_prob_and_usage_from_the_reply(server: FakeServer, backend: OpenAIBackend) -> None:
    candidates = {' "yes': -0.2, ' "no': -1.9, ' "Yes': -3.0, ' "': -4.0, " null": -5.0}
    tokens = answer_tokens(' "yes', candidates)
    content = "".join(t["token"] for t in tokens)
    usage = {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290}
    server.script(
        Scripted(body={**chat_reply(content, logprobs=tokens, usage=usage), "timings": {"prompt_ms": 2.5}})
    )
    generation = generate(backend, conversation()[0][:2])

    yes, no = math.exp(-0.2) + math.exp(-3.0), math.exp(-1.9)
    assert generation.verdict_prob == pytest.approx(yes / (yes + no))
    assert generation.text == content
    assert isinstance(parse_turn(generation.text), Answer)
    assert (generation.prefill_tokens, generation.generated_tokens) == (1234, 56)
    assert generation.prefill_s == pytest.approx(0.0025)  # llama.cpp's timings
    assert generation.decode_s >= 0.0


def test_verdict_prob_with_the_quote_as_its_own_token() -> None:
    tokens = answer_tokens(' "', {' "': -0.01})
    tokens.insert(6, {"token": "no", "logprob": -0.1, "top_logprobs": [{"token": "no", "logprob": -0.1}]})
    tokens[6]["top_logprobs"] += [{"token": "yes", "logprob": -2.5}, {"token": "none", "logprob": -1.0}]
    expected = math.exp(-2.5) / (math.exp(-2.5) + math.exp(-0.1))  # "none" is not a verdict
    assert verdict_prob(tokens) == pytest.approx(expected)
    assert verdict_prob(tokens[:6]) is None  # cut off before the verdict
    assert verdict_prob(None) is None
    assert verdict_prob([{"token": "<tool_call>", "logprob": 0.0, "top_logprobs": []}]) is None


def test_length_finish_and_missing_logprobs(server: FakeServer, backend: OpenAIBackend) -> None:
    server.script(Scripted(body=chat_reply("<think>\nlong", finish_reason="length", usage={})))
    generation = generate(backend, conversation()[0][:2])
    assert generation.finish_reason == "length"
    assert generation.verdict_prob is None
    assert (generation.prefill_tokens, generation.generated_tokens, generation.prefill_s) == (0, 0, 0.0)


def test_options_shape_the_request(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    backend = OpenAIBackend(
        server.url,
        "m",
        image_format="jpeg",
        send_tools=False,
        logprobs=False,
        temperature=0.7,
        extra_body={"tool_choice": "none", "top_k": 1},
    )
    frame = np.repeat(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], 24, axis=0).repeat(3, axis=2)
    generate(backend, opening_messages(frame, "bottle"))
    request = server.requests[0]
    sent = request["json"]
    assert request["auth"] == "Bearer sk-test"
    assert "tools" not in sent and "logprobs" not in sent and "top_logprobs" not in sent
    assert sent["tool_choice"] == "none" and sent["top_k"] == 1 and sent["temperature"] == 0.7
    url = sent["messages"][1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert np.abs(decode(url).astype(int) - frame).max() < 8  # lossy, but the same picture
    assert backend.model_id == f"openai:m@{server.url}" and backend.name == "openai"


def test_encode_image_is_lossless_for_png() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(decode(encode_image(image)), image)
    with pytest.raises(ValueError, match="image_format"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", image_format="webp")  # type: ignore[arg-type]


def test_without_the_openai_package_the_backend_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # the module imports, only building the backend needs it
    with pytest.raises(BackendError, match="needs the `openai` package"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m")


def test_a_tool_message_must_answer_a_call(server: FakeServer, backend: OpenAIBackend) -> None:
    messages, _, _ = conversation()
    with pytest.raises(ValueError, match="no unanswered tool call"):
        generate(backend, [*messages, messages[-1]])
    assert server.requests == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_is_a_backend_error() -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(BackendError, match="cannot reach"):
        generate(backend, conversation()[0][:2], deadline=time.monotonic() + 2.0)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Scripted(status=500, body={"error": {"message": "CUDA out of memory"}}),
            "HTTP 500: CUDA out of memory",
        ),
        (Scripted(status=400, body={"error": {"message": "tool choice"}}), "HTTP 400"),
        (Scripted(body=b'{"choices": [{"message": '), "not JSON"),
        (Scripted(body=b"[1, 2]"), "not a JSON object"),
        (Scripted(body={"error": {"message": "model not loaded"}}), "no choices: model not loaded"),
        (Scripted(body={"choices": [{"finish_reason": "stop"}]}), "no message"),
        (Scripted(body=chat_reply(tool_calls=[{"function": {"arguments": "{}"}}])), "malformed tool call"),
    ],
)
def test_failed_requests_are_backend_errors(
    server: FakeServer, backend: OpenAIBackend, reply: Scripted, message: str
) -> None:
    server.script(reply)
    with pytest.raises(BackendError, match=message):
        generate(backend, conversation()[0][:2])


def test_a_slow_server_cannot_hold_the_call_past_the_deadline(
    server: FakeServer, backend: OpenAIBackend
) -> None:
    server.script(Scripted(body=chat_reply("late"), delay_s=3.0))
    deadline = time.monotonic() + 0.3
    with pytest.raises(BackendError, match="did not answer within"):
        generate(backend, conversation()[0][:2], deadline=deadline)
    assert time.monotonic() < deadline + 0.1


def test_a_deadline_already_passed_sends_nothing(server: FakeServer, backend: OpenAIBackend) -> None:
    with pytest.raises(BackendError, match="deadline passed"):
        generate(backend, conversation()[0][:2], deadline=time.monotonic() - 0.01)
    assert server.requests == []
