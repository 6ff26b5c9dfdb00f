"""What the protocol writes is exactly what Qwen3-VL's chat template renders for the same messages."""

import numpy as np

from station.protocol import (
    SYSTEM_PROMPT,
    Answer,
    ToolCall,
    ToolCalls,
    assistant_message,
    chat_template,
    opening_messages,
    parse_turn,
    render_chat,
    tool_message,
)
from tools.registry import Observation

TOOLS = [
    {
        "type": "function",
        "function": {"name": "crop", "description": "zoom", "parameters": {"type": "object"}},
    }
]


def conversation():
    image = np.zeros((32, 32, 3), np.uint8)
    calls = ToolCalls(
        calls=(ToolCall("crop", {"bbox": [10, 20, 300, 400]}), ToolCall("prior", {})),
        content="<think>\nThe left edge looks rough.\n</think>",
    )
    answer = Answer(
        anomaly=True,
        type="crack",
        bbox=(10, 20, 300, 400),
        confidence=0.8,
        content="<think>\nA crack.\n</think>",
    )
    messages = opening_messages(image, "bottle")
    messages.append(assistant_message(calls))
    messages.append(tool_message(Observation(tool="crop", data={"bbox": [10, 20, 300, 400]}, images=[image])))
    messages.append(tool_message(Observation(tool="prior", data={"prior": "round glass bottle"})))
    messages.append(assistant_message(answer))
    return messages, calls, answer


def test_assistant_turns_render_as_the_protocol_writes_them():
    messages, calls, answer = conversation()
    text = render_chat(messages, TOOLS)
    assert f"<|im_start|>assistant\n{calls.text}<|im_end|>" in text
    assert f"<|im_start|>assistant\n{answer.text}<|im_end|>" in text


def test_rendered_turns_parse_back_to_the_same_turns():
    messages, calls, answer = conversation()
    text = render_chat(messages, TOOLS)
    turns = [t.split("<|im_end|>")[0] for t in text.split("<|im_start|>assistant\n")[1:]]
    assert parse_turn(turns[0]).text == calls.text
    assert parse_turn(turns[1]) == answer


def test_prompt_layout_follows_the_model_template():
    messages, _, _ = conversation()
    text = render_chat(messages[:2], TOOLS, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT + "\n\n# Tools\n")
    assert '<tools>\n{"type": "function", "function": {"name": "crop"' in text
    assert "<|vision_start|><|image_pad|><|vision_end|>Product: bottle." in text
    assert text.endswith("<|im_start|>assistant\n")


def test_consecutive_tool_results_share_one_user_turn_with_their_images():
    messages, _, _ = conversation()
    text = render_chat(messages, TOOLS)
    block = text.split("<|im_start|>user\n<tool_response>")[1].split("<|im_end|>")[0]
    assert block.count("<tool_response>") == 1  # the second one; the first opened the turn
    assert block.count("<|image_pad|>") == 1


def test_template_is_the_qwen3_vl_original():
    template = chat_template()
    assert '<tool_call>\\n{\\"name\\": <function-name>' in template
    assert "{%- if add_vision_id %}" in template
