"""Plugin hooks of the text plugin (entry point polydiff: text)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # noqa: ANN001 - pluggy register callback
    """Register ``text/mdlm``, ``text/radd`` and ``text/ar``."""
    from .recipes import RECIPES

    for cls in RECIPES:
        register(cls())
