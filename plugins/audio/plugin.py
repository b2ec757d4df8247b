"""Plugin hooks of the audio plugin (entry point polydiff: audio)."""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """``audio/sgmse``, ``audio/diffwave``, ``audio/udiffse``."""
    from .recipes import SGMSERecipe
    from .udiffse import UDiffSERecipe
    from .vocoder import DiffWaveRecipe

    register(SGMSERecipe())
    register(DiffWaveRecipe())
    register(UDiffSERecipe())
