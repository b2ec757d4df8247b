"""Coercion of config values to their dataclass field types (int, float, bool, str, Path, tuple, Optional, Literal)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from ..errors import ConfigError


def coerce(value: Any, tp: Any, key: str, *, raw: str | None = None) -> Any:
    """``value`` converted to the annotated type ``tp`` (``raw`` is the text it was parsed from).

    Raises:
        ConfigError: naming ``key`` and the expected type.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        optional = type(None) in args
        if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null"}):
            if optional:
                return None
            raise type_error(key, tp, value)
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key, raw=raw)
            except ConfigError:
                continue
        raise type_error(key, tp, value)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if raw is not None and isinstance(choice, str) and raw == choice:
                return choice
        raise ConfigError(f"config key {key!r}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (tuple, list) or tp in (tuple, list):
        container = tuple if (origin or tp) is tuple else list
        items = value
        if isinstance(value, str):
            items = [s.strip() for s in value.split(",")] if value.strip() else []
        if not isinstance(items, (list, tuple)):
            raise type_error(key, tp, value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ConfigError(f"config key {key!r}: expected {len(args)} items ({type_name(tp)}), got {value!r}")
            return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
        elem = args[0] if args else Any
        return container(coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(items))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise type_error(key, tp, value)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0", "on", "off"}:
            return value.lower() in {"true", "yes", "1", "on"}
        raise type_error(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise type_error(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise type_error(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None:
            return raw
        raise type_error(key, tp, value)
    if isinstance(tp, type) and issubclass(tp, os.PathLike):
        if isinstance(value, (str, os.PathLike)):
            return tp(raw if raw is not None and not isinstance(value, str) else value)
        raise type_error(key, tp, value)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise type_error(key, tp, value)
    return value


def field_types(cls: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: fall back to the raw field types
        hints = {}
    return {f.name: hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
            for f in dataclasses.fields(cls) if f.init}


def is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def type_error(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})")


__all__ = ["coerce", "field_types", "is_optional", "type_name"]
