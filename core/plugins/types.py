"""What the plugin layer exposes: :class:`PluginInfo`, the :class:`Registries` façade, the hook table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..hookspecs import PluginLoadWarning
from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from ..processes import ForwardProcess
    from ..recipes import Recipe
    from ..samplers.base import SamplerSpec

#: registry attribute -> (hook name, singular noun used in messages)
REGISTRY_HOOKS: dict[str, tuple[str, str]] = {
    "processes": ("register_processes", "process"),
    "samplers": ("register_samplers", "sampler"),
    "recipes": ("register_recipes", "recipe"),
    "commands": ("register_commands", "command"),
}


@dataclass(frozen=True)
class PluginInfo:
    """What ``polydiff plugins`` shows for one plugin.

    Attributes:
        name: the entry-point name (``"polydiff"`` for the core's built-ins).
        version: the version of the distribution that provides it (``None`` when unknown).
        status: ``loaded``, ``failed`` or ``blocked``.
        error: ``"ExceptionType: message"`` when failed; the reason when blocked.
        module: the module the entry point names. distribution: the distribution's name.
        hooks: the hooks it implements. registered: ``{registry: [names]}`` of what it registered.
    """

    name: str
    version: str | None
    status: str
    error: str | None = None
    module: str | None = None
    distribution: str | None = None
    hooks: tuple[str, ...] = ()
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: the fields, with one list per registry (``recipes``, ``processes``...)."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "module": self.module,
            "distribution": self.distribution,
            "hooks": list(self.hooks),
        }
        for kind in REGISTRY_HOOKS:
            out[kind] = list(self.registered.get(kind, []))
        return out


class Registries:
    """Typed façade over the registries; use :func:`registries` to get the loaded one.

    ``commands`` is filled on first access (it needs typer and the CLI modules).
    """

    def __init__(self, load_commands: Callable[[], None] | None = None) -> None:
        self.processes: Registry[Callable[..., ForwardProcess]] = Registry("process")
        self.samplers: Registry[SamplerSpec] = Registry("sampler")
        self.recipes: Registry[Recipe] = Registry("recipe")
        self._commands: Registry[Any] = Registry("command")
        self._load_commands = load_commands

    @property
    def commands(self) -> Registry[Any]:
        """CLI commands (typer ``CommandInfo`` / ``TyperInfo``) by command name."""
        if self._load_commands is not None:
            load, self._load_commands = self._load_commands, None
            load()
        return self._commands

    def all(self, *, include_commands: bool = True) -> dict[str, Registry[Any]]:
        """``{attribute: registry}`` for every registry."""
        out = {k: getattr(self, k) for k in REGISTRY_HOOKS if k != "commands"}
        if include_commands:
            out["commands"] = self.commands
        return out


__all__ = ["REGISTRY_HOOKS", "PluginInfo", "PluginLoadWarning", "Registries"]
