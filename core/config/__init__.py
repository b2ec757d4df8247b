"""Typed configs: nested frozen dataclasses resolved from layers and saved as TOML.

``resolve_config`` applies, in order: the recipe's defaults (``recipe.config_class()``) → a preset
(a flat mapping ``{"train.steps": 200}``) → a TOML file → ``--set a.b=value`` strings. Every value is
checked against its field's type (int, float, bool, str, Path, tuple/list, Optional, Literal, nested
dataclass): an unknown key is a :class:`~polydiff.errors.ConfigError` listing the valid keys at that
level, a wrong type names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .coerce import coerce, field_types, is_optional, type_name
from .toml_writer import file_mode, toml_dumps

_MISSING = object()


def resolve_config(
    recipe: Any,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> Any:
    """The recipe's config with a preset, a TOML file and ``key=value`` overrides applied, validated.

    Raises:
        ConfigError: an unknown preset, key or type; an unreadable TOML file (naming the file).
    """
    cfg = default_config(recipe)
    if preset is not None:
        presets = dict(getattr(recipe, "presets", {}) or {})
        if preset not in presets:
            known = ", ".join(sorted(presets)) or "(none)"
            raise ConfigError(f"recipe {recipe.name!r} has no preset {preset!r}; presets: {known}")
        cfg = apply_mapping(cfg, presets[preset], source=f"preset {preset!r}")
    if config_file is not None:
        cfg = apply_mapping(cfg, read_toml(config_file), source=str(config_file))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Any, overrides: Iterable[str], *, source: str = "--set",
                    fixed: Iterable[str] = ()) -> Any:
    """``cfg`` with ``key=value`` strings applied in order (values parsed as TOML literals, else strings).

    Raises:
        ConfigError: a malformed item, an unknown key, a wrong type, or a key in one of the ``fixed``
            top-level sections (named in the message).
    """
    fixed = tuple(fixed)
    for item in overrides:
        key, raw = parse_override(item)
        if key.split(".")[0] in fixed:
            raise ConfigError(f"{source} {item!r}: the {key.split('.')[0]}.* settings cannot be changed here "
                              f"(fixed: {', '.join(s + '.*' for s in fixed)})")
        cfg = set_value(cfg, key, _parse_literal(raw), raw=raw, source=source)
    return cfg


def default_config(recipe: Any) -> Any:
    """``recipe.config_class()``, checked to be a dataclass."""
    cls = getattr(recipe, "config_class", None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ConfigError(f"recipe {getattr(recipe, 'name', recipe)!r}: config_class must be a dataclass, got {cls!r}")
    try:
        return cls()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"recipe {recipe.name!r}: its config_class() cannot be built with defaults: {exc}") from None


def parse_override(item: str) -> tuple[str, str]:
    """Split ``"a.b=value"`` into ``("a.b", "value")``."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. train.steps=100), got {item!r}")
    return key.strip(), raw.strip()


def apply_mapping(cfg: Any, mapping: Mapping[str, Any], *, source: str) -> Any:
    """Apply a mapping whose keys are dotted (``"train.lr"``) or nested tables, in order."""
    for key, value in _flatten(cfg, mapping).items():
        cfg = set_value(cfg, key, value, source=source)
    return cfg


def set_value(cfg: Any, key: str, value: Any, *, raw: str | None = None, source: str = "") -> Any:
    """A copy of ``cfg`` with the dotted ``key`` set to ``value`` coerced to the field's type."""
    parts = key.split(".")
    return _set(cfg, parts, value, raw, prefix="", source=source)


def _set(obj: Any, parts: list[str], value: Any, raw: str | None, *, prefix: str, source: str) -> Any:
    hints = field_types(type(obj))
    head, rest = parts[0], parts[1:]
    here = f"{prefix}.{head}" if prefix else head
    if head not in hints:
        where = f"in {prefix!r}" if prefix else "at the top level"
        raise ConfigError(f"unknown config key {here!r} ({source}); valid keys {where}: {', '.join(hints)}")
    current = getattr(obj, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"config key {here!r} is a value of type {type_name(hints[head])}, not a section")
        new = _set(current, rest, value, raw, prefix=here, source=source)
    elif dataclasses.is_dataclass(current) and isinstance(value, Mapping):
        new = current
        for k, v in _flatten(current, value).items():
            new = _set(new, k.split("."), v, None, prefix=here, source=source)
    else:
        new = coerce(value, hints[head], here, raw=raw)
    try:
        return dataclasses.replace(obj, **{head: new})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config value for {here!r} = {new!r}: {exc}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (tuples as lists, paths as strings, ``None`` kept) of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        out[f.name] = _plain(getattr(cfg, f.name))
    return out


def flat_items(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 3e-4, ...}`` for every leaf of a config."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            out.update(flat_items(v, key + "."))
        else:
            out[key] = v
    return out


def diff_configs(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs of the same class."""
    fa, fb = flat_items(a), flat_items(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k, _MISSING) != fb.get(k, _MISSING))


def save_config(cfg: Any, path: str | Path, *, header: Mapping[str, Any] | None = None) -> Path:
    """Write ``cfg`` as TOML (atomically); ``header`` adds top-level keys first (e.g. the recipe name).

    ``None`` values are left out (TOML has no null); :func:`load_config` restores them.
    """
    data = dict(header or {})
    data.update(config_to_dict(cfg))
    text = toml_dumps(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; the run's other files follow the umask
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_config(recipe: Any, path: str | Path, *, ignore: Iterable[str] = ("recipe",)) -> Any:
    """Read a config written by :func:`save_config` back into the recipe's config class.

    Keys in ``ignore`` (top level, e.g. ``recipe``) are skipped; an optional field missing from the
    file is ``None`` (that is how :func:`save_config` writes ``None``); other missing fields keep
    their defaults.
    """
    data = {k: v for k, v in read_toml(path).items() if k not in set(ignore)}
    cfg = _none_missing_optionals(default_config(recipe), data)
    return apply_mapping(cfg, data, source=str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None


def _none_missing_optionals(cfg: Any, data: Mapping[str, Any]) -> Any:
    hints = field_types(type(cfg))
    changes = {}
    for name, tp in hints.items():
        current = getattr(cfg, name)
        if name not in data:
            if is_optional(tp) and current is not None:
                changes[name] = None
        elif dataclasses.is_dataclass(current) and isinstance(data[name], Mapping):
            changes[name] = _none_missing_optionals(current, data[name])
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _flatten(cfg: Any, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Turn nested tables into dotted keys, stopping at fields that are not sections."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        obj = cfg
        for part in str(key).split("."):
            obj = getattr(obj, part, None) if dataclasses.is_dataclass(obj) else None
        if isinstance(value, Mapping) and dataclasses.is_dataclass(obj):
            for sub, v in _flatten(obj, value).items():
                out[f"{key}.{sub}"] = v
        else:
            out[str(key)] = value
    return out


def _parse_literal(raw: str) -> Any:
    """A ``--set`` value as a TOML literal (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``"x"``), else the text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return config_to_dict(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


__all__ = [
    "apply_mapping",
    "apply_overrides",
    "coerce",
    "config_to_dict",
    "default_config",
    "diff_configs",
    "flat_items",
    "load_config",
    "parse_override",
    "read_toml",
    "resolve_config",
    "save_config",
    "set_value",
    "toml_dumps",
]
