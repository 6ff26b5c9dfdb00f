"""Read a model turn. Total: any string yields ToolCalls, an Answer or a ParseError, never an exception.

Generation can stop anywhere (token limit, deadline) and small or half-trained models write anything, so
every branch is a value the agent loop can act on: run tools, finish, or fail safe with a reason.
"""

from __future__ import annotations

import json
import math
import re

from station.protocol.turns import Answer, ParsedTurn, ParseError, ToolCall, ToolCalls
from tools.boxes import check_rel_box

# One pattern for both blocks, scanned left to right: a block ends at its own closing tag, so a tag spelled
# inside another block's JSON (a string value or key "<answer>") is content, not structure.
_BLOCK = re.compile(r"<(tool_call|answer)>(.*?)</\1>", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
# End-of-turn markers a backend may leave in decoded text.
_TRAILERS = ("<|im_end|>", "<|endoftext|>")
_MAX_TYPE_LEN = 120


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON here")


def _load_object(body: str, what: str) -> dict | ParseError:
    body = body.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return ParseError("bad_json", f"{what} is not valid JSON: {str(exc)[:200]}")
    if not isinstance(value, dict):
        return ParseError("bad_json", f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _parse_call(body: str) -> ToolCall | ParseError:
    obj = _load_object(body, "tool call")
    if isinstance(obj, ParseError):
        return obj
    name, arguments = obj.get("name"), obj.get("arguments", {})
    if not isinstance(name, str) or not name.strip():
        return ParseError("bad_tool_call", 'tool call needs a "name" string')
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ParseError("bad_tool_call", '"arguments" must be a JSON object')
    return ToolCall(name=name, arguments=arguments, raw_arguments=_raw_arguments(body, name, arguments))


def _raw_arguments(body: str, name: str, arguments: dict) -> str | None:
    """The arguments as written, when the call is in the template's own layout; kept so that re-rendering
    the conversation reproduces the model's bytes (key order, spacing) rather than a re-serialisation."""
    body = body.strip()
    prefix = f'{{"name": "{name}", "arguments": '
    if not (body.startswith(prefix) and body.endswith("}")):
        return None
    raw = body[len(prefix) : -1]
    try:
        same = json.loads(raw, parse_constant=_reject_constant) == arguments
    except (ValueError, RecursionError):
        return None
    return raw if same else None


def _parse_answer(body: str, content: str) -> Answer | ParseError:
    obj = _load_object(body, "answer")
    if isinstance(obj, ParseError):
        return obj
    anomaly = obj.get("anomaly")
    if isinstance(anomaly, str) and anomaly.strip().lower() in ("yes", "no"):
        is_anomaly = anomaly.strip().lower() == "yes"
    elif isinstance(anomaly, bool):
        is_anomaly = anomaly
    else:
        return ParseError("bad_answer", '"anomaly" must be "yes" or "no"')

    defect_type = obj.get("type")
    if defect_type is not None and not isinstance(defect_type, str):
        return ParseError("bad_answer", '"type" must be a string or null')
    if isinstance(defect_type, str):
        defect_type = defect_type.strip()[:_MAX_TYPE_LEN]
        if defect_type.lower() in ("", "none", "null", "good", "normal"):
            defect_type = None

    bbox = obj.get("bbox")
    if bbox is not None:
        problem = check_rel_box(bbox)
        if problem:
            return ParseError("bad_answer", problem)
        bbox = tuple(bbox)

    if "confidence" not in obj:
        return ParseError("bad_answer", '"confidence" is missing')
    confidence = obj["confidence"]
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not math.isfinite(confidence)
        or not 0 <= confidence <= 1
    ):
        return ParseError("bad_answer", '"confidence" must be a number from 0 to 1')
    return Answer(
        anomaly=is_anomaly, type=defect_type, bbox=bbox, confidence=float(confidence), content=content
    )


def parse_turn(text: object) -> ParsedTurn:
    """Classify one assistant turn."""
    if not isinstance(text, str):
        return ParseError("empty", f"model output is not text ({type(text).__name__})")
    text = text.strip()
    for trailer in _TRAILERS:
        while text.endswith(trailer):
            text = text[: -len(trailer)].rstrip()
    if not text:
        return ParseError("empty", "model output is empty")

    blocks = list(_BLOCK.finditer(text))
    calls = [b for b in blocks if b.group(1) == "tool_call"]
    answers = [b for b in blocks if b.group(1) == "answer"]
    outside = _BLOCK.sub("", text)
    if "<tool_call>" in outside or "<answer>" in outside:
        return ParseError("truncated", "an opened tag is never closed; the output was cut off")
    if calls and answers:
        return ParseError("conflict", "a turn must either call tools or answer, not both")
    if len(answers) > 1:
        return ParseError("multiple_answers", "give exactly one <answer>")
    if answers:
        return _parse_answer(answers[0].group(2), text[: answers[0].start()].rstrip("\n"))
    if calls:
        parsed = []
        for match in calls:
            call = _parse_call(match.group(2))
            if isinstance(call, ParseError):
                return call
            parsed.append(call)
        return ToolCalls(calls=tuple(parsed), content=text[: calls[0].start()].rstrip("\n"))
    if text.count("<think>") > text.count("</think>"):
        return ParseError("truncated", "the <think> block is never closed; the output was cut off")
    return ParseError("no_action", "no <tool_call> and no <answer> in the output")
