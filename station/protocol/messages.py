"""Conversations as chat messages, in the shape Qwen3-VL's template and OpenAI-compatible servers take.

Images stay numpy arrays (RGB) inside the messages; each backend converts them to what it needs.
"""

from __future__ import annotations

import numpy as np

from station.protocol.prompt import SYSTEM_PROMPT, user_text
from station.protocol.turns import Answer, ToolCalls
from tools.registry import Observation


def image_part(image: np.ndarray) -> dict:
    return {"type": "image", "image": image}


def opening_messages(image: np.ndarray, product: str | None, instruction: str | None = None) -> list[dict]:
    """System prompt, then the part's image with the inspection request."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [image_part(image), {"type": "text", "text": user_text(product, instruction)}],
        },
    ]


def assistant_message(turn: ToolCalls | Answer) -> dict:
    return turn.message()


def tool_message(observation: Observation) -> dict:
    """One tool result: its JSON text first, so the model knows what the images that follow show."""
    content: list[dict] = [{"type": "text", "text": observation.text}]
    content.extend(image_part(img) for img in observation.images)
    return {"role": "tool", "name": observation.tool, "content": content}
