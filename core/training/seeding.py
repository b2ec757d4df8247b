"""Seed mixing for the engine (kept here for imports of ``polydiff.training.seeding``; lives in :mod:`polydiff.seeding`)."""

from __future__ import annotations

from ..seeding import mix_seed, sample_generators

__all__ = ["mix_seed", "sample_generators"]
