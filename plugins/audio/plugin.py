"""Plugin hooks of the audio plugin (entry point polydiff: audio)."""

from __future__ import annotations

from polydiff import hookimpl  # noqa: F401  (hooks are added with the recipes)
