"""A small TOML writer for nested dicts of scalars and lists (reading uses the standard ``tomllib``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

_umask_lock = threading.Lock()


def file_mode(base: int = 0o666) -> int:
    """``base`` less the process umask: the mode ``open()`` would give a new file (``0o644`` under umask 022).

    Temporary files from ``tempfile.mkstemp`` (and safetensors) are created ``0o600``; files renamed
    into place from them get this mode so a run directory's files all follow the umask.
    """
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return base & ~mask


def toml_dumps(data: Mapping[str, Any]) -> str:
    """A small TOML writer for nested dicts of scalars (str, int, float, bool) and lists; ``None`` is skipped."""
    lines: list[str] = []
    _write_table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables.items():
        _write_table(v, [*path, str(k)], lines)


def _toml_key(key: str) -> str:
    key = str(key)
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return _toml_string(key)


def _toml_string(s: str) -> str:
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise ValueError(f"cannot write {v!r} ({type(v).__name__}) as TOML")


__all__ = ["file_mode", "toml_dumps"]
