"""The sampler registry: built-in samplers plus those plugins register.

Core sampler modules add themselves with :func:`register_builtin` at their bottom; the package
(:mod:`polydiff.samplers`) imports them, so the built-ins are complete once it is imported. This
module never imports the plugin manager: :mod:`polydiff.plugins` installs itself as the source of
:data:`TABLE` when it is imported, so lookups also see plugin samplers (a built-in name never loads
plugins, and without the plugin layer the built-ins still work).
"""

from __future__ import annotations

from ..processes import ForwardProcess
from ..registry import BuiltinTable
from .base import SamplerSpec

BUILTIN: dict[str, SamplerSpec] = {}

#: the built-ins (:data:`BUILTIN`) and, once :mod:`polydiff.plugins` is imported, what plugins registered
TABLE: BuiltinTable[SamplerSpec] = BuiltinTable("sampler", BUILTIN)


def register_builtin(spec: SamplerSpec) -> SamplerSpec:
    """Add a core sampler (called by the core's own sampler modules at import)."""
    if spec.name in BUILTIN:
        raise ValueError(f"sampler {spec.name!r} is registered twice in the core")
    return TABLE.add(spec.name, spec)


def all_samplers() -> dict[str, SamplerSpec]:
    """Every sampler: built-ins and plugin-registered ones."""
    return TABLE.as_dict()


def get_sampler(name: str) -> SamplerSpec:
    """The sampler called ``name``; an unknown name lists the known ones."""
    spec = TABLE.lookup(name)
    if spec is None:
        raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(TABLE.names())}")
    return spec


def names(process: ForwardProcess | None = None) -> list[str]:
    """Sampler names, all of them or those that work with ``process``."""
    samplers = all_samplers()
    return sorted(n for n, s in samplers.items() if process is None or s.supports(process))


__all__ = ["BUILTIN", "TABLE", "all_samplers", "get_sampler", "names", "register_builtin"]
