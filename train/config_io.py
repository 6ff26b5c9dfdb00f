"""Training configs as dataclasses read from YAML, with errors that name the file and the key.

One loader for every `<algo>_config.py`: each field is checked against its type hint (YAML 1.1 reads a
learning rate like ``1e-5`` as a string, so numbers also accept numeric strings), unknown and missing keys are
listed, and nested dataclasses (GRPO's ``reward``, the demo's SFT ``rounds``) are built the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the file and the key."""


def load_config(cls: type[T], path: str | Path, nested: dict[str, type] | None = None) -> T:
    """Read ``cls`` from a YAML file. Relative paths in the file are kept as written (working directory)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return config_from_dict(cls, data, str(path), nested)


def config_from_dict(
    cls: type[T], data: Any, source: str = "config", nested: dict[str, type] | None = None
) -> T:
    try:
        return _build(cls, data, "", nested or {})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _build(cls: type, data: Any, prefix: str, nested: dict[str, type]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(known)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key = prefix + name
        if name in nested:
            values[name] = _build(nested[name], value, f"{key}.", {})
            continue
        values[name] = _check(value, hints[name], key)
    missing = [n for n, f in known.items() if n not in data and _required(f)]
    if missing:
        raise ConfigError(f"missing required key(s): {', '.join(prefix + n for n in missing)}")
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None


def _required(f: Any) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _check(value: Any, hint: Any, key: str) -> Any:
    """The value if it has the declared type. Floats also take ints and numeric strings: YAML 1.1 reads
    ``1e-6`` (no dot) as a string, and a learning rate is nearly always written that way."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):  # e.g. one item of a list of rounds
        return _build(hint, value, f"{key}.", {})
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(
                f"{key} must be one of {', '.join(map(str, typing.get_args(hint)))}, got {value!r}"
            )
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported setting type {hint}")
