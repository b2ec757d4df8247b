"""The core's own contributions, registered through the same hooks as any plugin (name ``polydiff``).

This module is part of the plugin layer: it imports the layers below it (processes, samplers)
and nothing above (docs/DESIGN.md §3). The CLI is a higher layer, so it hands its commands in
through :func:`add_command_provider` (``polydiff/__init__.py`` installs one that imports
:mod:`polydiff.cli.commands` only when commands are collected).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hookspecs import Register, hookimpl
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
def register_commands(cli: Any) -> None:
    """The shared CLI: plugins, train, sample, evaluate, demo, new-plugin (from the installed providers)."""
    for provider in list(_COMMAND_PROVIDERS):
        provider(cli)


def _describe_process(name: str) -> str:
    kinds = {"ouve": "mean-reverting (OUVE) toward cond['y']", "masked": "masked (absorbing) discrete",
             "uniform": "uniform discrete", "product": "product of named component processes"}
    return kinds.get(name, f"Gaussian, schedule {name!r}")
