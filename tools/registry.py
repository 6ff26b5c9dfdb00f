"""Describe tools to the model and run them without ever raising into the agent loop.

Every tool declares its arguments as a Pydantic model. The same model yields the JSON schema shown to the
model (function-calling style, as Qwen3-VL's chat template renders ``tools``) and validates what the model
sends back, so the description and the check can never disagree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError


class ToolError(Exception):
    """Raised inside a tool for a problem the model caused and can fix; becomes an error observation."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ToolContext:
    """What a tool may use besides its arguments: the part being inspected and station settings."""

    frame: np.ndarray
    product: str | None = None
    priors: Any = None  # tools.prior.PriorStore; typed loosely so the registry does not import it
    mm_per_px: float | None = None
    max_observation_pixels: int = 512 * 512


@dataclass
class Observation:
    """A tool's result as the model will read it: a text part (JSON) and zero or more images.

    ``data`` is the structured payload the text is rendered from; ``error`` is set instead when the
    call failed, so the loop and the trace can tell the two apart without parsing text.
    """

    tool: str
    data: dict = field(default_factory=dict)
    images: list[np.ndarray] = field(default_factory=list)
    error: dict | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        payload = {"tool": self.tool, "error": self.error} if self.error else {"tool": self.tool, **self.data}
        return json.dumps(payload, ensure_ascii=False)


ArgsT = TypeVar("ArgsT", bound=BaseModel)


@dataclass(frozen=True)
class Tool(Generic[ArgsT]):
    name: str
    description: str
    args_model: type[ArgsT]
    run: Callable[[ArgsT, ToolContext], Observation]

    def schema(self) -> dict:
        """The function description the model sees (OpenAI / Hermes function-calling shape)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _clean_schema(self.args_model.model_json_schema()),
            },
        }


def _clean_schema(schema: dict) -> dict:
    """Drop Pydantic's titles: they cost prompt tokens and tell the model nothing new."""
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


def error_observation(tool: str, code: str, message: str) -> Observation:
    return Observation(tool=tool, error={"code": code, "message": message})


class ToolRegistry:
    """The tools one conversation can call, in the order they are described to the model."""

    def __init__(self, tools: list[Tool] | None = None):
        self._tools: dict[str, Tool] = {}
        for tool in tools or []:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in self._tools.values()]

    def call(self, name: object, arguments: object, context: ToolContext) -> Observation:
        """Validate and run one call. Total: every outcome, including a bug in a tool, is an Observation."""
        start = time.perf_counter()
        obs = self._call(name, arguments, context)
        obs.seconds = time.perf_counter() - start
        return obs

    def _call(self, name: object, arguments: object, context: ToolContext) -> Observation:
        label = name if isinstance(name, str) else repr(name)
        if not isinstance(name, str) or name not in self._tools:
            known = ", ".join(self._tools)
            return error_observation(label, "unknown_tool", f"no tool named {label!r}; available: {known}")
        tool = self._tools[name]
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return error_observation(name, "invalid_arguments", "arguments must be a JSON object")
        try:
            args = tool.args_model.model_validate(arguments)
        except ValidationError as exc:
            return error_observation(name, "invalid_arguments", _describe_validation(exc))
        try:
            return tool.run(args, context)
        except ToolError as exc:
            return error_observation(name, exc.code, exc.message)
        except Exception as exc:  # a tool bug must not kill the inspection; the trace keeps the reason
            return error_observation(name, "tool_failed", f"{type(exc).__name__}: {exc}")


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
