"""The sampler registry: built-in samplers plus those plugins register."""

from __future__ import annotations

from ..processes import ForwardProcess
from .base import SamplerSpec

BUILTIN: dict[str, SamplerSpec] = {}


def register_builtin(spec: SamplerSpec) -> SamplerSpec:
    """Add a core sampler (used by the core's own modules at import)."""
    if spec.name in BUILTIN:
        raise ValueError(f"sampler {spec.name!r} is registered twice in the core")
    BUILTIN[spec.name] = spec
    return spec


def all_samplers() -> dict[str, SamplerSpec]:
    """Every sampler: built-ins and plugin-registered ones."""
    _load_builtins()
    try:
        from ..plugins import registries
    except ImportError:
        return dict(BUILTIN)
    return registries().samplers.as_dict(default=BUILTIN)


def get_sampler(name: str) -> SamplerSpec:
    """The sampler called ``name``; an unknown name lists the known ones."""
    samplers = all_samplers()
    try:
        return samplers[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(sorted(samplers))}") from None


def names(process: ForwardProcess | None = None) -> list[str]:
    """Sampler names, all of them or those that work with ``process``."""
    samplers = all_samplers()
    return sorted(n for n, s in samplers.items() if process is None or s.supports(process))


def _load_builtins() -> None:
    from . import continuous, discrete  # noqa: F401  (modules register themselves)
