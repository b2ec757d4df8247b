"""Plugin hooks of the time-series plugin (entry point polydiff: timeseries)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``timeseries/diffusion-ts`` and ``timeseries/csdi``."""
    from .recipes import CSDIRecipe, DiffusionTSRecipe

    register(DiffusionTSRecipe())
    register(CSDIRecipe())
