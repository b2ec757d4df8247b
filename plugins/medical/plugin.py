"""Plugin hooks of the medical plugin (entry point polydiff: medical)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``medical/ct-prior``, ``medical/mri-prior``, ``medical/us-tissue`` and ``medical/us-haze``."""
    from .recipes import CTPriorRecipe, MRIPriorRecipe
    from .recipes_us import HazePriorRecipe, USTissueRecipe

    register(CTPriorRecipe())
    register(MRIPriorRecipe())
    register(USTissueRecipe())
    register(HazePriorRecipe())
