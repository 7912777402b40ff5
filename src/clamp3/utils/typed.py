"""Typed dataclasses from JSON objects: the one reader of every settings file.

A settings file (a training config, a model's ``config.json``) is JSON, so a value can arrive
as the wrong type: ``"lr": "1e-4"`` or ``"epochs": 2.5``. Such a value used to pass into the
dataclass and fail much later, as ``'<=' not supported between instances of 'str' and 'int'``
from deep inside a check. :func:`build` refuses it at once, naming the field, the type it
needs and the value it got, and refuses unknown fields (a typo is not a silent default).

Types understood (the ones the settings use): ``bool``, ``int`` (not a bool), ``float`` (an
int or float, not a bool), ``str``, ``X | None``, ``list[X]``, ``tuple[X, ...]`` and
``tuple[X, Y]`` (a JSON list is made a tuple), ``dict[str, X]``, ``Any``, and dataclasses (a
JSON object is built with :func:`build` in turn; an instance is taken as it is).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """``cls(**data)`` after checking every field: ``ValueError`` ``"<where>: ..."`` for a field
    ``cls`` lacks, a required field missing, or a value of the wrong type. Nested dataclass
    fields may be JSON objects."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a JSON object, got {_show(data)}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)} (known: {sorted(known)})")
    required = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(value, hints[name], where, name) for name, value in data.items()}
    return cls(**values)


def _convert(value: Any, hint: Any, where: str, name: str) -> Any:
    """``value`` of field ``name`` as ``hint`` describes it (JSON lists to tuples, objects to
    dataclasses), or ``ValueError`` ``"<where>: <name> must be ..."``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # ``X | None``: X's own message (a nested field's, say)
            return _convert(value, options[0], where, name)
        for option in options:  # the first member the value fits
            try:
                return _convert(value, option, where, name)
            except ValueError:
                continue
        raise ValueError(f"{where}: {name} must be {_describe(hint)}, got {_show(value)}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return build(hint, value, f"{where} {name}")
        raise ValueError(f"{where}: {name} must be a JSON object, got {_show(value)}")
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: {name} must be {_describe(hint)}, got {_show(value)}")
            return tuple(_convert(v, a, where, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_convert(v, item, where, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict and isinstance(value, dict):
        item = args[1] if args else Any
        return {k: _convert(v, item, where, f"{name}[{k!r}]") for k, v in value.items()}
    if _fits(value, hint):
        return value  # an int stays an int in a float field: saved configs keep their text
    raise ValueError(f"{where}: {name} must be {_describe(hint)}, got {_show(value)}")


def _fits(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(args[0], _describe(args[0]))}" if args else "a list"
    if origin is tuple:
        return f"a list of {len(args)} values" if args and args[-1] is not Ellipsis else "a list"
    if origin is dict:
        return "a JSON object"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
