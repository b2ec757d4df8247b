"""Forward processes and their registry: ``polydiff.processes.get(name, **params)``.

Built-in names: ``vp-linear``, ``vp-cosine``, ``ve``, ``edm``, ``flow``, ``sub-vp`` (Gaussian),
``ouve`` (mean-reverting toward ``cond['y']``), ``sb-ve`` (the Schrödinger bridge to ``cond['y']``), ``masked``, ``uniform`` and ``marginal`` (discrete) and
``product`` (named components). Plugins add more through the ``register_processes`` hook: this
layer never imports the plugin manager; :mod:`polydiff.plugins` installs itself as the source of
:data:`TABLE` when it is imported (a built-in name never loads plugins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import BuiltinTable
from ..schedules import SCHEDULES, get_schedule
from .base import ForwardProcess, Noised
from .bridge import BridgeProcess, BridgeVE, sb_ve
from .discrete import (
    DISCRETE_SCHEDULES,
    DiscreteProcess,
    DiscreteScheduleValues,
    MarginalProcess,
    MaskedProcess,
    UniformProcess,
    discrete_schedule,
    sample_categorical,
)
from .gaussian import GaussianProcess, gaussian
from .mean_reverting import OUVE, MeanRevertingProcess, bisect_inverse
from .product import ProductProcess


def _product(components: dict[str, Any], weights: dict[str, float] | None = None) -> ProductProcess:
    built = {}
    for key, spec in components.items():
        if isinstance(spec, ForwardProcess):
            built[key] = spec
        elif isinstance(spec, dict) and "name" in spec:
            params = {k: v for k, v in spec.items() if k != "name"}
            built[key] = get(spec["name"], **params)
        else:
            raise ValueError(f"product component {key!r}: expected a ForwardProcess or a dict with a 'name', got {spec!r}")
    return ProductProcess(built, weights)


def _ouve(cond_key: str = "y", **params: Any) -> MeanRevertingProcess:
    return MeanRevertingProcess(OUVE(**params), cond_key=cond_key)


BUILTIN: dict[str, Callable[..., ForwardProcess]] = {
    **{name: (lambda name: (lambda **p: gaussian(name, **p)))(name) for name in SCHEDULES},
    "ouve": _ouve,
    "sb-ve": sb_ve,
    "masked": MaskedProcess,
    "uniform": UniformProcess,
    "marginal": MarginalProcess,
    "product": _product,
}


#: the built-ins (:data:`BUILTIN`) and, once :mod:`polydiff.plugins` is imported, what plugins registered
TABLE: BuiltinTable[Callable[..., ForwardProcess]] = BuiltinTable("process", BUILTIN)


def names() -> list[str]:
    """Names accepted by :func:`get`, sorted."""
    return TABLE.names()


def get(name: str, **params: Any) -> ForwardProcess:
    """Build the forward process called ``name`` with keyword parameters.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or an unknown parameter.
    """
    factory = TABLE.lookup(name)
    if factory is None:
        raise ValueError(f"unknown process {name!r}; known processes: {', '.join(TABLE.names())}")
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"process {name!r}: bad parameters {sorted(params)}: {exc}") from None


__all__ = [
    "BUILTIN",
    "BridgeProcess",
    "BridgeVE",
    "DISCRETE_SCHEDULES",
    "DiscreteProcess",
    "DiscreteScheduleValues",
    "ForwardProcess",
    "GaussianProcess",
    "MarginalProcess",
    "MaskedProcess",
    "MeanRevertingProcess",
    "Noised",
    "OUVE",
    "ProductProcess",
    "TABLE",
    "UniformProcess",
    "bisect_inverse",
    "discrete_schedule",
    "gaussian",
    "get",
    "get_schedule",
    "names",
    "sample_categorical",
]
