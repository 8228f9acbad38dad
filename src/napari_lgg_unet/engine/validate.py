"""The one place where options and config values are checked, so the CLI, the API and the widgets agree.

Config dataclasses call these helpers in `__post_init__`; `from_json` builds a config from untrusted JSON (a model's
config.json, a resume state) with the types its fields declare, before any of its values is used.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import numbers
import sys
import types
import typing
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T")


def check_int(name: str, value: Any, low: int, high: int, error: type[Exception] = InputError) -> int:
    """A whole number in [low, high], as a Python int. numpy integers (what arithmetic on arrays, or a table's
    column, gives) count; bool does not (numpy's neither), nor does a float, even 3.0: a count that arrives as a
    float was computed in a way the caller should look at."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, not {value}")
    return int(value)


def check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
    error: type[Exception] = InputError,
) -> float:
    """A finite number in the range, as a Python float; `low_open` / `high_open` exclude the ends. numpy numbers
    count (np.float32 is no float subclass), bool does not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a finite number, not {value!r}")
    number = _as_float(value)
    if math.isnan(number) or (math.isinf(number) and not isinstance(value, numbers.Integral)):
        raise error(f"{name} must be a finite number, not {value!r}")
    if number < low or number > high or (low_open and number == low) or (high_open and number == high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise error(f"{name} must be in {left}{low}, {high}{right}, not {value}")
    return number


def _as_float(value: numbers.Real) -> float:
    """The float a user means by `value`: np.float32(0.4) is 0.4000000059604645 as a float, while its shortest text,
    0.4, is what they wrote (and what compares equal to 0.4). A whole number beyond any float is infinite, so out of
    every range."""
    if isinstance(value, numbers.Integral):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if not isinstance(value, float):
        try:
            return float(str(value))
        except ValueError:  # a Real whose text is no float, e.g. Fraction(2, 5)
            pass
    return float(value)


def check_choice(name: str, value: Any, choices: typing.Iterable[str], error: type[Exception] = InputError) -> str:
    """One of `choices`, spelt as there: 'FP32', ' Torch' or a pasted 'cosine\n' name a choice as plainly as its own
    spelling does, so every named setting (precision, backend, loss, ...) takes them, from every entry point."""
    choices = tuple(choices)
    given = value.strip().casefold() if isinstance(value, str) else None
    chosen = next((choice for choice in choices if choice.casefold() == given), None)
    if chosen is None:
        raise error(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return chosen


def check_bool(name: str, value: Any, error: type[Exception] = InputError) -> bool:
    """True or False, numpy's included, as a Python bool; 1, 0 and text are refused (bool("no") is True)."""
    numpy = sys.modules.get("numpy")  # a numpy bool exists only once numpy is loaded; this module does not load it
    if not (isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_))):
        raise error(f"{name} must be true or false, not {value!r}")
    return bool(value)


def check_items(name: str, value: Any, error: type[Exception] = InputError) -> tuple:
    """The items of a list, tuple, 1D array or generator, in order, as a tuple (what a config's tuple field holds, so
    configs compare and hash alike); text is refused rather than split into letters, and a set for want of order."""
    if isinstance(value, (str, bytes, collections.abc.Set)) or not isinstance(value, collections.abc.Iterable):
        raise error(f"{name} must be a list, not {value!r}")
    return tuple(value)


def store(config: Any, **checked: Any) -> None:
    """Keep checked values on a frozen dataclass, from its `__post_init__`: a numpy scalar becomes the Python value
    its check returned, so configs compare and hash alike and their JSON stays plain."""
    for name, value in checked.items():
        object.__setattr__(config, name, value)


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


def unknown_keys(cls: type, data: Any, prefix: str = "") -> list[str]:
    """The keys of the JSON object `data` (nested objects included) that dataclass `cls` has no field for, as
    dotted names: what `from_json` would drop. For files whose unknown settings would change a result."""
    if not isinstance(data, dict):
        return []
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls) if field.init}
    found = []
    for key, value in data.items():
        if key not in fields:
            found.append(prefix + key)
        elif dataclasses.is_dataclass(hints[key]):
            found.extend(unknown_keys(hints[key], value, f"{prefix}{key}."))
    return found


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
