"""Qwen3-VL's own chat template, rendered without a tokenizer.

`qwen3_vl_chat_template.jinja` is the template Qwen3-VL-Instruct ships (byte-identical to the copy TRL keeps
for identity checks, so TRL recognises it and swaps in its training variant for assistant-only loss).
Rendering it here, with the same ``tojson`` transformers uses, lets tests and tools see the exact text a
backend's tokenizer will produce, and gives the tiny test model the real template.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_FILE = "qwen3_vl_chat_template.jinja"


@cache
def chat_template() -> str:
    return files("station.protocol").joinpath(TEMPLATE_FILE).read_text(encoding="utf-8")


def tojson(
    x: object, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False
) -> str:
    """transformers' override of Jinja's tojson: plain json.dumps, no HTML escaping."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@cache
def _compiled():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    return env.from_string(chat_template())


def render_chat(
    messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = False
) -> str:
    """The prompt text for ``messages`` exactly as ``processor.apply_chat_template(..., tokenize=False)``."""
    return _compiled().render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)
