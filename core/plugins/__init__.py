"""Plugin loading (pluggy, project ``polydiff``) and the typed registry façade.

Plugins are modules named by entry points in the group ``polydiff``. They are loaded lazily — on the
first call of :func:`registries` or :func:`plugin_infos` — one entry point at a time: a plugin that
raises on import (or in a hook) is recorded as ``failed`` with its error, everything it registered
is rolled back, and the others keep working. The core's own processes, samplers, guidance and CLI
commands are registered through the same hooks by :mod:`polydiff.builtin_plugin`.

Environment variables (read when plugins are loaded; :func:`reset_plugins` re-reads them):

``POLYDIFF_LOAD_PLUGINS``
    Comma-separated allow-list of entry-point names; an empty string loads no external plugin.
``POLYDIFF_DISABLE_PLUGINS``
    Comma-separated deny-list; those plugins are blocked (pluggy ``set_blocked``), status ``blocked``.
``POLYDIFF_DISABLE_PLUGIN_AUTOLOAD``
    ``1``: load no external plugin (same as ``POLYDIFF_LOAD_PLUGINS=""``).
``POLYDIFF_STRICT_PLUGINS``
    ``1``: re-raise a plugin's import or hook error instead of recording it (for plugin authors).

The lower layers never import this package (docs/DESIGN.md §3). Importing it installs the loaded
registries as the source of their lookup tables (``polydiff.processes.TABLE``,
``polydiff.samplers.registry.TABLE``): a name that is not built in is looked up in the registries,
which loads the allowed plugins on first use.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pluggy

from ..processes import TABLE as _PROCESS_TABLE
from ..samplers.registry import TABLE as _SAMPLER_TABLE
from .loader import (
    BUILTIN_PLUGIN,
    ENTRY_POINT_GROUP,
    ENV_DISABLE,
    ENV_LOAD,
    ENV_NO_AUTOLOAD,
    ENV_STRICT,
    PluginState,
    env_flag,
)
from .types import REGISTRY_HOOKS, PluginInfo, PluginLoadWarning, Registries

_STATE: PluginState | None = None
_STATE_LOCK = threading.Lock()


def _state() -> PluginState:
    global _STATE
    with _STATE_LOCK:
        if _STATE is None:
            _STATE = PluginState()
        return _STATE


def registries() -> Registries:
    """The registries, with every allowed plugin loaded (lazily, on the first call)."""
    st = _state()
    st.ensure_loaded()
    return st.regs


def _processes() -> dict[str, Any]:
    return registries().processes.as_dict()


def _samplers() -> dict[str, Any]:
    return registries().samplers.as_dict()


_PROCESS_TABLE.set_source(_processes)
_SAMPLER_TABLE.set_source(_samplers)


def plugin_infos() -> list[PluginInfo]:
    """One :class:`PluginInfo` per plugin (the core's built-ins first), loading plugins if needed."""
    return _state().infos()


def plugin_manager() -> pluggy.PluginManager:
    """The underlying pluggy manager (loaded). Prefer :func:`registries` at call sites."""
    st = _state()
    st.ensure_loaded()
    return st.pm


def register_plugin(plugin: Any, name: str) -> PluginInfo:
    """Register a plugin object (a module or an object with ``@hookimpl`` methods) after loading.

    Used by tests and the ``polydiff.testing`` fixtures. Errors follow the usual rules (recorded as
    ``failed``, or raised under ``POLYDIFF_STRICT_PLUGINS=1``).
    """
    st = _state()
    st.ensure_loaded()
    if name in st.records:
        raise ValueError(f"a plugin named {name!r} is already registered")
    st._add(name, plugin, version=None, module=getattr(plugin, "__name__", type(plugin).__name__), distribution=None)
    if st.records[name].status == "loaded" and st.regs._load_commands is None:  # commands were already collected
        try:
            st._call_hooks(name, ["commands"])
        except Exception as exc:
            if env_flag(ENV_STRICT):
                st._rollback(name)
                raise
            st._fail(name, exc, version=None, module=st.records[name].module, distribution=None)
    return next(i for i in st.infos() if i.name == name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin and everything it registered."""
    st = _state()
    st._rollback(name)
    st.records.pop(name, None)


@contextlib.contextmanager
def isolated_plugins(*plugins: tuple[str, Any], entry_points: bool = False) -> Iterator[Registries]:
    """A fresh plugin state for a test: the core's built-ins plus ``(name, plugin)`` pairs.

    Installed entry points are not loaded unless ``entry_points=True``; the previous state is
    restored on exit. Yields the loaded :class:`Registries`.
    """
    global _STATE
    with _STATE_LOCK:
        saved, _STATE = _STATE, PluginState(entry_points=entry_points)
    try:
        for name, plugin in plugins:
            register_plugin(plugin, name)
        yield registries()
    finally:
        with _STATE_LOCK:
            _STATE = saved


def reset_plugins() -> None:
    """Forget every loaded plugin (tests); the next access reloads, re-reading the environment."""
    global _STATE
    with _STATE_LOCK:
        _STATE = None


__all__ = [
    "BUILTIN_PLUGIN",
    "ENV_DISABLE",
    "ENV_LOAD",
    "ENV_NO_AUTOLOAD",
    "ENV_STRICT",
    "REGISTRY_HOOKS",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginLoadWarning",
    "Registries",
    "isolated_plugins",
    "plugin_infos",
    "plugin_manager",
    "register_plugin",
    "registries",
    "reset_plugins",
    "unregister_plugin",
]
