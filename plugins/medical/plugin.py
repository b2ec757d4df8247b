"""Plugin hooks of the medical plugin (entry point polydiff: medical)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``medical/ct-prior`` and ``medical/mri-prior``."""
    from .recipes import CTPriorRecipe, MRIPriorRecipe

    register(CTPriorRecipe())
    register(MRIPriorRecipe())
