"""Plugin hooks of the molecules plugin (entry point polydiff: molecules)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``molecules/edm`` and ``molecules/eqgat`` (3D: zero-CoM positions + categorical atoms, charges[, bonds])."""
    from .recipes import EDMRecipe, EQGATRecipe

    register(EDMRecipe())
    register(EQGATRecipe())
