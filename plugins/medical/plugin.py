"""Plugin hooks of the medical plugin (entry point polydiff: medical)."""

from __future__ import annotations

from polydiff import hookimpl  # noqa: F401  (hooks are added with the recipes)
