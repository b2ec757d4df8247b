"""Named registries of plugin contributions: ``Registry[T]``; a lower layer's lookups: ``BuiltinTable[T]``.

One registry per kind of contribution (processes, samplers, guidance, backbones, datasets, metrics,
recipes, commands). The plugin loader (:mod:`polydiff.plugins`) fills them through the
``register`` callbacks it passes to the hooks, so the core controls naming, duplicates and
metadata: a duplicate name is an error naming both plugins, an unknown name lists the known ones.

Both are plain data and know nothing of pluggy. The layers below the plugin manager (processes,
samplers) keep their own items in a :class:`BuiltinTable`; the plugin layer, when it is imported,
installs a *source* there (dependency inversion), so a lookup by name also sees what plugins
registered without the lower layer ever importing the plugin manager (docs/DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import PolydiffError, UserInputError

T = TypeVar("T")


class DuplicateNameError(PolydiffError, ValueError):
    """Two plugins registered the same name in one registry (the message names both plugins)."""


class UnknownNameError(UserInputError, LookupError):
    """A name that no plugin registered (the message lists the known names)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered item.

    Attributes:
        name: the registry name. obj: the registered object (factory, spec, recipe...).
        plugin: the name of the plugin that registered it. description: one line for listings.
        meta: any further keyword metadata given to ``register``.
    """

    name: str
    obj: T
    plugin: str
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Named items of one kind, each remembered with the plugin that registered it.

    Args:
        kind: what the items are, singular, used in messages (``"process"``, ``"recipe"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T, *, plugin: str, description: str = "", **meta: Any) -> Entry[T]:
        """Add ``obj`` under ``name``.

        Raises:
            ValueError: an empty or non-string name.
            DuplicateNameError: ``name`` is already registered (the message names both plugins).
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r} (plugin {plugin!r})")
        if name in self._entries:
            other = self._entries[name].plugin
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}"
            )
        entry = Entry(name=name, obj=obj, plugin=plugin, description=description or "", meta=dict(meta))
        self._entries[name] = entry
        return entry

    def unregister_plugin(self, plugin: str) -> list[str]:
        """Remove everything ``plugin`` registered (roll back a plugin that failed); returns the names."""
        gone = [n for n, e in self._entries.items() if e.plugin == plugin]
        for n in gone:
            del self._entries[n]
        return gone

    def entry(self, name: str) -> Entry[T]:
        """The :class:`Entry` called ``name``.

        Raises:
            UnknownNameError: the message lists the known names.
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str) -> T:
        """The object registered as ``name`` (an unknown name raises :class:`UnknownNameError`)."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def by_plugin(self, plugin: str) -> list[str]:
        """Names registered by ``plugin``, in registration order."""
        return [n for n, e in self._entries.items() if e.plugin == plugin]

    def entries(self) -> list[Entry[T]]:
        """All entries in registration order."""
        return list(self._entries.values())

    def describe(self) -> list[dict[str, str]]:
        """``[{"name", "plugin", "description"}]`` sorted by name, for listings."""
        return [
            {"name": e.name, "plugin": e.plugin, "description": e.description}
            for e in sorted(self._entries.values(), key=lambda e: e.name)
        ]

    def as_dict(self, default: Mapping[str, T] | None = None) -> dict[str, T]:
        """``{name: obj}``; names in ``default`` that nobody registered are included beneath."""
        out = dict(default or {})
        out.update({n: e.obj for n, e in self._entries.items()})
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


class BuiltinTable(Generic[T]):
    """A lower layer's built-in items by name, plus whatever a higher layer supplies through a source.

    The built-ins are plain data, filled by the lower layer itself (``processes``: at import;
    ``samplers``: each sampler module calls ``register_builtin`` at its bottom). A higher layer — the
    plugin manager — may :meth:`set_source`: a callable returning ``{name: item}`` of everything
    registered (loading plugins if needed). :meth:`lookup` tries the built-ins first and asks the
    source only on a miss, so a built-in name never loads plugins; :meth:`as_dict` and :meth:`names`
    ask it always. Without a source (the plugin layer not imported) only the built-ins are seen.

    Args:
        kind: what the items are, singular, used in messages. builtin: the dict to hold the built-ins
            (kept as is, so a module can expose it, e.g. ``polydiff.processes.BUILTIN``).
    """

    def __init__(self, kind: str, builtin: dict[str, T] | None = None) -> None:
        self.kind = kind
        self.builtin: dict[str, T] = {} if builtin is None else builtin
        self._source: Callable[[], Mapping[str, T]] | None = None

    def add(self, name: str, obj: T) -> T:
        """Add a built-in item (a duplicate name is a :class:`DuplicateNameError`)."""
        if name in self.builtin:
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice in the core")
        self.builtin[name] = obj
        return obj

    def set_source(self, source: Callable[[], Mapping[str, T]] | None) -> Callable[[], Mapping[str, T]] | None:
        """Install (or, with ``None``, remove) the higher layer's source; returns the previous one."""
        previous, self._source = self._source, source
        return previous

    def lookup(self, name: str) -> T | None:
        """The item called ``name`` (built-ins first, then the source), or ``None``."""
        if name in self.builtin:
            return self.builtin[name]
        if self._source is None:
            return None
        return self._source().get(name)

    def as_dict(self) -> dict[str, T]:
        """``{name: item}``: everything the source supplies, with the built-ins."""
        out = dict(self._source()) if self._source is not None else {}
        out.update(self.builtin)
        return out

    def names(self) -> list[str]:
        """Every name, sorted."""
        return sorted(self.as_dict())

    def __repr__(self) -> str:
        return f"BuiltinTable({self.kind!r}, builtin={sorted(self.builtin)}, source={self._source is not None})"


__all__ = ["BuiltinTable", "DuplicateNameError", "Entry", "Registry", "UnknownNameError"]
