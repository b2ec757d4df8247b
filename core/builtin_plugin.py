"""The core's own contributions, registered through the same hooks as any plugin (name ``polydiff``).

This module is part of the plugin layer: it imports the layers below it (processes, samplers,
guidance) and nothing above (DESIGN.md §3). The CLI is a higher layer, so it hands its commands in
through :func:`add_command_provider` (``polydiff/__init__.py`` installs one that imports
:mod:`polydiff.cli.commands` only when commands are collected).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Callable
from typing import Any

from . import guidance
from .hookspecs import PluginLoadWarning, Register, hookimpl, strict_plugins
from .processes import BUILTIN as BUILTIN_PROCESSES
from .samplers.registry import BUILTIN as BUILTIN_SAMPLERS

#: functions ``provider(cli: typer.Typer)`` adding the core's CLI commands (see :func:`add_command_provider`)
_COMMAND_PROVIDERS: list[Callable[[Any], None]] = []


def add_command_provider(provider: Callable[[Any], None]) -> None:
    """Add the core's CLI commands through ``provider(cli)`` when commands are collected (once per provider)."""
    if provider not in _COMMAND_PROVIDERS:
        _COMMAND_PROVIDERS.append(provider)


@hookimpl
def register_processes(register: Register) -> None:
    """The built-in forward processes (``polydiff.processes.BUILTIN``)."""
    for name, factory in BUILTIN_PROCESSES.items():
        register(name, factory, description=_describe_process(name))


@hookimpl
def register_samplers(register: Register) -> None:
    """The built-in samplers (``polydiff.samplers.registry.BUILTIN``, filled when :mod:`polydiff.samplers` imports)."""
    for spec in BUILTIN_SAMPLERS.values():
        register(spec)


@hookimpl
def register_guidance(register: Register) -> None:
    """Every class in ``polydiff.guidance`` (and its submodules) with a string ``name`` attribute."""
    for name, cls in guidance_classes().items():
        register(name, cls, description=_first_line(cls.__doc__ or ""))


@hookimpl
def register_commands(cli: Any) -> None:
    """The shared CLI: plugins, train, sample, evaluate, demo, new-plugin (from the installed providers)."""
    for provider in list(_COMMAND_PROVIDERS):
        provider(cli)


def guidance_classes() -> dict[str, type]:
    """``{name: class}`` for the guidance classes the core defines (discovered on call)."""
    modules = [guidance]
    for info in pkgutil.iter_modules(guidance.__path__, prefix=guidance.__name__ + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:  # one broken module must not take the core's CLI and registries down
            if strict_plugins():
                raise
            warnings.warn(f"polydiff: guidance module {info.name} failed to import and is skipped: "
                          f"{type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=2)
    found: dict[str, type] = {}
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            name = cls.__dict__.get("name")
            if not cls.__module__.startswith(guidance.__name__) or not isinstance(name, str) or not name:
                continue
            if name in found and found[name] is not cls:
                raise ValueError(f"guidance name {name!r} is used by {found[name].__qualname__} and {cls.__qualname__}")
            found[name] = cls
    return found


def _describe_process(name: str) -> str:
    kinds = {"ouve": "mean-reverting (OUVE) toward cond['y']", "masked": "masked (absorbing) discrete",
             "uniform": "uniform discrete", "product": "product of named component processes"}
    return kinds.get(name, f"Gaussian, schedule {name!r}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""
