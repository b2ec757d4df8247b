"""The core's own contributions, registered through the same hooks as any plugin (name ``polydiff``).

Everything is imported inside the hooks, so loading plugins never imports more than it must and
``polydiff.processes`` / ``polydiff.samplers`` can ask the registry without circular imports.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from typing import Any

from .hookspecs import Register, hookimpl


@hookimpl
def register_processes(register: Register) -> None:
    """The built-in forward processes (``polydiff.processes.BUILTIN``)."""
    from .processes import BUILTIN

    for name, factory in BUILTIN.items():
        register(name, factory, description=_describe_process(name))


@hookimpl
def register_samplers(register: Register) -> None:
    """The built-in samplers (``polydiff.samplers.registry.BUILTIN``, filled when their modules import)."""
    from .samplers import registry

    registry._load_builtins()
    for spec in registry.BUILTIN.values():
        register(spec)


@hookimpl
def register_guidance(register: Register) -> None:
    """Every class in ``polydiff.guidance`` (and its submodules) with a string ``name`` attribute."""
    for name, cls in guidance_classes().items():
        register(name, cls, description=_first_line(cls.__doc__ or ""))


@hookimpl
def register_commands(cli: Any) -> None:
    """The shared CLI: plugins, train, sample, evaluate, demo, new-plugin."""
    from .cli.commands import add_core_commands

    add_core_commands(cli)


def guidance_classes() -> dict[str, type]:
    """``{name: class}`` for the guidance classes the core defines (discovered on call)."""
    from . import guidance

    modules = [guidance]
    for info in pkgutil.iter_modules(guidance.__path__, prefix=guidance.__name__ + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as exc:  # one broken module must not take the core's CLI and registries down
            from .plugins.loader import ENV_STRICT, PluginLoadWarning, env_flag

            if env_flag(ENV_STRICT):
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
