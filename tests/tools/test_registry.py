"""The registry describes tools from their argument models and never raises into the agent loop."""

import json

import numpy as np
import pytest
from pydantic import Field

from tools.registry import Observation, Tool, ToolContext, ToolError, ToolRegistry
from tools.toolkit import _Args


class EchoArgs(_Args):
    word: str = Field(description="what to echo", max_length=10)
    times: int = Field(1, ge=1, le=3)


def echo(args, ctx):
    return Observation(tool="echo", data={"said": [args.word] * args.times})


def refuse(args, ctx):
    raise ToolError("refused", "not today")


def crash(args, ctx):
    raise ZeroDivisionError("boom")


@pytest.fixture
def registry():
    return ToolRegistry(
        [
            Tool("echo", "Repeat a word.", EchoArgs, echo),
            Tool("refuse", "Always refuses.", EchoArgs, refuse),
            Tool("crash", "Has a bug.", EchoArgs, crash),
        ]
    )


@pytest.fixture
def ctx():
    return ToolContext(frame=np.zeros((10, 10, 3), np.uint8))


def test_schema_comes_from_the_argument_model(registry):
    schema = registry.schemas()[0]
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "echo" and fn["description"] == "Repeat a word."
    params = fn["parameters"]
    assert params["required"] == ["word"]
    assert params["properties"]["times"] == {"default": 1, "maximum": 3, "minimum": 1, "type": "integer"}
    assert "title" not in json.dumps(schema)
    assert params["additionalProperties"] is False


def test_a_valid_call_runs_and_is_timed(registry, ctx):
    obs = registry.call("echo", {"word": "ok", "times": 2}, ctx)
    assert obs.ok and obs.data == {"said": ["ok", "ok"]} and obs.seconds > 0
    assert json.loads(obs.text) == {"tool": "echo", "said": ["ok", "ok"]}


@pytest.mark.parametrize(
    ("name", "arguments", "code", "fragment"),
    [
        ("zoom", {}, "unknown_tool", "available: echo, refuse, crash"),
        (None, {}, "unknown_tool", "None"),
        (["echo"], {}, "unknown_tool", "['echo']"),
        ("echo", [1, 2], "invalid_arguments", "JSON object"),
        ("echo", {}, "invalid_arguments", "word: Field required"),
        ("echo", {"word": "x", "times": 9}, "invalid_arguments", "times"),
        ("echo", {"word": "x", "volume": 3}, "invalid_arguments", "volume: Extra inputs"),
        ("echo", {"word": "a" * 50}, "invalid_arguments", "word"),
        ("refuse", {"word": "x"}, "refused", "not today"),
        ("crash", {"word": "x"}, "tool_failed", "ZeroDivisionError: boom"),
    ],
)
def test_every_failure_is_an_error_observation(registry, ctx, name, arguments, code, fragment):
    obs = registry.call(name, arguments, ctx)
    assert not obs.ok
    assert obs.error["code"] == code
    assert fragment in obs.error["message"]
    assert json.loads(obs.text)["error"]["code"] == code


def test_missing_arguments_mean_an_empty_object(registry, ctx):
    assert registry.call("echo", None, ctx).error["code"] == "invalid_arguments"


def test_names_are_unique(registry):
    with pytest.raises(ValueError, match="twice"):
        registry.register(Tool("echo", "again", EchoArgs, echo))
    assert registry.names == ["echo", "refuse", "crash"] and "echo" in registry
