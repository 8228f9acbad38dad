"""The one place where options and config values are checked, so the CLI, the API and the widgets agree.

Config dataclasses call these helpers in `__post_init__`; `from_json` builds a config from untrusted JSON (a model's
config.json, a resume state) with the types its fields declare, before any of its values is used.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def check_int(name: str, value: Any, low: int, high: int, error: type[Exception] = InputError) -> int:
    """A whole number in [low, high] (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, not {value}")
    return value


def check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
    error: type[Exception] = InputError,
) -> float:
    """A finite number in the range; `low_open` / `high_open` exclude the ends."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(f"{name} must be a finite number, not {value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise error(f"{name} must be in {left}{low}, {high}{right}, not {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: typing.Iterable[str], error: type[Exception] = InputError) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def check_bool(name: str, value: Any, error: type[Exception] = InputError) -> bool:
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, not {value!r}")
    return value


def _convert(name: str, kind: Any, value: Any, error: type[Exception]) -> Any:
    """`value` from JSON as the annotated `kind`; ints stay ints, lists become tuples, dicts nested configs."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(name, inner, value, error)
    if dataclasses.is_dataclass(kind):
        return from_json(kind, value, error, prefix=f"{name}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise error(f"{name} must be a list, not {value!r}")
        return tuple(_convert(f"{name}[{i}]", args[0], item, error) for i, item in enumerate(value))
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{name} must be a list, not {value!r}")
        return [_convert(f"{name}[{i}]", args[0], item, error) for i, item in enumerate(value)]
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise error(f"{name} must be an object, not {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{name} must be a number, not {value!r}")
        return float(value)
    if kind in (int, bool, str) and (type(value) is not kind):
        wanted = {int: "a whole number", bool: "true or false", str: "text"}[kind]
        raise error(f"{name} must be {wanted}, not {value!r}")
    return value


def from_json(cls: type[T], data: Any, error: type[Exception] = InputError, prefix: str = "") -> T:
    """Build dataclass `cls` from a JSON object: unknown keys are ignored, missing ones take the defaults.

    Every present value must have the declared type; the class's own `__post_init__` then checks ranges.
    """
    if not isinstance(data, dict):
        raise error(f"{prefix.rstrip('.') or cls.__name__} must be an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {
        field.name: _convert(prefix + field.name, hints[field.name], data[field.name], error)
        for field in dataclasses.fields(cls)
        if field.init and field.name in data
    }
    try:
        return cls(**values)
    except InputError as problem:
        raise error(str(problem)) from None
