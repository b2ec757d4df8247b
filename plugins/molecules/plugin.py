"""Plugin hooks of the molecules plugin (entry point polydiff: molecules)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``molecules/edm`` and ``molecules/eqgat`` (3D: zero-CoM positions + categorical atoms, charges[, bonds]);
    ``molecules/digress`` and ``molecules/gdss`` (2D graphs: categorical / Gaussian atoms and bonds)."""
    from .recipes import EDMRecipe, EQGATRecipe
    from .recipes2d import DigressRecipe, GDSSRecipe

    register(EDMRecipe())
    register(EQGATRecipe())
    register(DigressRecipe())
    register(GDSSRecipe())
