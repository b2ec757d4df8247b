"""Plugin hooks of the molecules plugin (entry point polydiff: molecules).

Placeholder written by the data/metrics helper so the entry point resolves; M-model owns this file and
replaces the hook body with the molecule recipes.
"""

from __future__ import annotations

from polydiff import hookimpl


@hookimpl
def register_recipes(register):  # type: ignore[no-untyped-def]
    """Molecule recipes (none registered yet)."""
    return None
