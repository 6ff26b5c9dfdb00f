"""The inspection protocol, defined once for training and runtime.

- ``prompt``: the system prompt and the inspection request.
- ``turns`` / ``parser``: what a model turn can be (tool calls, answer, parse error) and a total parser.
- ``messages``: conversations as chat messages for the model's own chat template.
- ``template``: Qwen3-VL's chat template, rendered without a tokenizer.
"""

from station.protocol.messages import assistant_message, opening_messages, tool_message
from station.protocol.parser import parse_turn
from station.protocol.prompt import SYSTEM_PROMPT, user_text
from station.protocol.template import chat_template, render_chat
from station.protocol.turns import Answer, ParsedTurn, ParseError, ToolCall, ToolCalls

__all__ = [
    "SYSTEM_PROMPT",
    "Answer",
    "ParseError",
    "ParsedTurn",
    "ToolCall",
    "ToolCalls",
    "assistant_message",
    "chat_template",
    "opening_messages",
    "parse_turn",
    "render_chat",
    "tool_message",
    "user_text",
]
