"""Plugin hook specifications (pluggy project ``polydiff``), register-callback style.

Each hook receives a ``register`` callback; calling it adds one named item. The core controls
naming, duplicates (an error naming both plugins) and metadata. Implement hooks with
``@polydiff.hookimpl`` in a module named by an entry point in the ``polydiff`` group.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("polydiff")
hookimpl = pluggy.HookimplMarker("polydiff")

Register = Callable[..., None]

#: ``1``: re-raise a plugin's import or hook error instead of recording it (for plugin authors)
ENV_STRICT = "POLYDIFF_STRICT_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin (or one part of one) failed to load; ``polydiff plugins`` lists it as ``failed``."""


def strict_plugins() -> bool:
    """Whether :data:`ENV_STRICT` is set: plugin errors are raised, not recorded as warnings."""
    return os.environ.get(ENV_STRICT, "").strip().lower() in {"1", "true", "yes", "on"}


@hookspec
def register_processes(register: Register) -> None:
    """``register(name, factory, *, description="")``: a forward process; ``factory(**params) -> ForwardProcess``."""


@hookspec
def register_samplers(register: Register) -> None:
    """``register(spec)``: a :class:`polydiff.samplers.SamplerSpec` (name, function, kind, options)."""


@hookspec
def register_recipes(register: Register) -> None:
    """``register(recipe)``: a :class:`polydiff.recipes.Recipe` instance named ``"<plugin>/<name>"``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``polydiff`` CLI (a ``typer.Typer`` application)."""
