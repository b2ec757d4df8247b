"""Loading plugins one entry point at a time, isolating failures (see :mod:`polydiff.plugins`)."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from .. import builtin_plugin, hookspecs
from .._version import __version__
from ..hookspecs import ENV_STRICT
from ..recipes import Recipe
from ..registry import Registry
from .types import REGISTRY_HOOKS, PluginInfo, PluginLoadWarning, Registries

ENTRY_POINT_GROUP = "polydiff"
BUILTIN_PLUGIN = "polydiff"
ENV_LOAD = "POLYDIFF_LOAD_PLUGINS"
ENV_DISABLE = "POLYDIFF_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class _Record:
    name: str
    status: str
    version: str | None = None
    error: str | None = None
    module: str | None = None
    distribution: str | None = None


class PluginState:
    """One plugin manager, its registries and what happened to each plugin."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self.entry_points = entry_points
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.regs = Registries(load_commands=self._load_commands)
        self.records: dict[str, _Record] = {}
        self.loaded = False
        self.loading = False
        self.lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        with self.lock:
            if self.loaded or self.loading:
                return
            self.loading = True
            try:
                self._load_all()
            finally:
                self.loading = False
                self.loaded = True

    def _load_all(self) -> None:
        self._add(BUILTIN_PLUGIN, builtin_plugin, version=__version__, module=builtin_plugin.__name__,
                  distribution="polydiff")
        strict = env_flag(ENV_STRICT)
        allow = _env_list(ENV_LOAD)
        if env_flag(ENV_NO_AUTOLOAD):
            allow = set()
        deny = _env_list(ENV_DISABLE) or set()
        for name in sorted(deny):
            self.pm.set_blocked(name)
        for ep in _entry_points() if self.entry_points else []:
            if ep.name in self.records:  # the same plugin seen twice (e.g. two installs): first wins
                continue
            version, dist = _dist_info(ep)
            if self.pm.is_blocked(ep.name):
                self.records[ep.name] = _Record(ep.name, "blocked", version, f"disabled by {ENV_DISABLE}", ep.value, dist)
                continue
            if allow is not None and ep.name not in allow:
                self.records[ep.name] = _Record(ep.name, "blocked", version, f"not in {ENV_LOAD}", ep.value, dist)
                continue
            try:
                module = ep.load()
            except Exception as exc:
                if strict:
                    raise
                self._fail(ep.name, exc, version=version, module=ep.value, distribution=dist)
                continue
            self._add(ep.name, module, version=version, module=ep.value, distribution=dist, strict=strict)

    def _add(self, name: str, plugin: Any, *, version: str | None, module: str | None,
             distribution: str | None, strict: bool | None = None) -> None:
        """Register one plugin object and call its registry hooks; on error record it as failed."""
        strict = env_flag(ENV_STRICT) if strict is None else strict
        self.records[name] = _Record(name, "loaded", version, None, module, distribution)
        try:
            if self.pm.register(plugin, name=name) is None:
                self.records[name] = _Record(name, "blocked", version, f"disabled by {ENV_DISABLE}", module, distribution)
                return
            _check_known_hooks(self.pm, plugin, name)
            self._call_hooks(name, [k for k in REGISTRY_HOOKS if k != "commands"])
        except Exception as exc:
            if strict:
                self._rollback(name)
                raise
            self._fail(name, exc, version=version, module=module, distribution=distribution)

    def _call_hooks(self, plugin_name: str, kinds: list[str]) -> None:
        for kind in kinds:
            hook_name, _ = REGISTRY_HOOKS[kind]
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                if kind == "commands":
                    self._collect_commands(impl)
                else:
                    register = _make_register(kind, self.regs.all(include_commands=False)[kind], plugin_name)
                    impl.function(**{a: register for a in impl.argnames})

    def _collect_commands(self, impl: Any) -> None:
        import typer

        sub = typer.Typer()
        impl.function(**{a: sub for a in impl.argnames})
        for cmd in sub.registered_commands:
            name = cmd.name or typer.main.get_command_name(cmd.callback.__name__)
            help_text = cmd.help or (cmd.callback.__doc__ or "")
            self.regs._commands.register(name, cmd, plugin=impl.plugin_name, description=_first_line(help_text))
        for group in sub.registered_groups:
            name = group.name or group.typer_instance.info.name
            self.regs._commands.register(name, group, plugin=impl.plugin_name, description=_first_line(group.help or ""))

    def _load_commands(self) -> None:
        self.ensure_loaded()
        strict = env_flag(ENV_STRICT)
        for name, rec in list(self.records.items()):
            if rec.status != "loaded":
                continue
            try:
                self._call_hooks(name, ["commands"])
            except Exception as exc:
                if strict:
                    self._rollback(name)
                    raise
                self._fail(name, exc, version=rec.version, module=rec.module, distribution=rec.distribution)

    def _fail(self, name: str, exc: BaseException, *, version: str | None, module: str | None,
              distribution: str | None) -> None:
        self._rollback(name)
        error = f"{type(exc).__name__}: {exc}"
        self.records[name] = _Record(name, "failed", version, error, module, distribution)
        warnings.warn(f"polydiff plugin {name!r} failed to load: {error}", PluginLoadWarning, stacklevel=4)

    def _rollback(self, name: str) -> None:
        for reg in (*self.regs.all(include_commands=False).values(), self.regs._commands):
            reg.unregister_plugin(name)
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)

    # -- listing -------------------------------------------------------------------------------
    def infos(self) -> list[PluginInfo]:
        self.ensure_loaded()
        regs = self.regs.all(include_commands=True)
        out = []
        for name, rec in self.records.items():
            plugin = self.pm.get_plugin(name)
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])) if plugin is not None else ()
            registered = {k: r.by_plugin(name) for k, r in regs.items()} if rec.status == "loaded" else {}
            out.append(PluginInfo(rec.name, rec.version, rec.status, rec.error, rec.module, rec.distribution,
                                  hooks, registered))
        return out


def _make_register(kind: str, registry: Registry[Any], plugin: str) -> Callable[..., None]:
    """The ``register`` callback handed to one plugin's hook for one registry."""
    if kind == "samplers":

        def register_sampler(spec: Any, *, description: str = "", **meta: Any) -> None:
            if not (hasattr(spec, "name") and hasattr(spec, "fn")):
                raise TypeError(f"register_samplers: expected a SamplerSpec, got {spec!r}")
            registry.register(spec.name, spec, plugin=plugin, description=description or spec.description, **meta)

        return register_sampler
    if kind == "recipes":

        def register_recipe(recipe: Any, **meta: Any) -> None:
            if isinstance(recipe, type) and issubclass(recipe, Recipe):
                recipe = recipe()
            if not isinstance(recipe, Recipe):
                raise TypeError(f"register_recipes: expected a polydiff.recipes.Recipe instance, got {recipe!r}")
            description = meta.pop("description", "") or recipe.description
            registry.register(recipe.name, recipe, plugin=plugin, description=description, **meta)

        return register_recipe

    def register_named(name: str, obj: Any, *, description: str = "", **meta: Any) -> None:
        if not description:
            description = _first_line(getattr(obj, "__doc__", "") or "")
        registry.register(name, obj, plugin=plugin, description=description, **meta)

    return register_named


def _check_known_hooks(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Refuse a plugin implementing a hook that ``polydiff.hookspecs`` does not specify (a typo)."""
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None and not any(i.optionalhook for i in caller.get_hookimpls() if i.plugin_name == name):
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
            raise pluggy.PluginValidationError(plugin, f"unknown hook {caller.name!r}; polydiff hooks: {known}")


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_info(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.version, dist.metadata["Name"]
    except Exception:  # broken metadata must not break listing
        return None, None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str] | None:
    """``None`` when unset; otherwise the set of comma-separated names (empty string: empty set)."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text and text.strip() else ""


__all__ = ["BUILTIN_PLUGIN", "ENTRY_POINT_GROUP", "ENV_DISABLE", "ENV_LOAD", "ENV_NO_AUTOLOAD", "ENV_STRICT", "PluginState",
           "env_flag"]
