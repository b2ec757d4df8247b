"""Seeds derived from several integers, and the one rule for per-sample generators.

``mix_seed(seed, i)`` gives unrelated streams for distinct tuples (splitmix64 rounds). Every recipe
seeds sample ``i`` of a request with base seed ``seed`` by :func:`sample_generators`, so a sample
depends on ``(seed, i)`` only — not on the batch size, the chunk it falls in or the other samples.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds): distinct tuples give unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 29
    return h & ((1 << 63) - 1)


def sample_generators(seed: int, num: int, *, start: int = 0, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample: sample ``start + i`` is seeded with ``mix_seed(seed, start + i)``.

    The generators live on ``device`` (the model's device, so noise is drawn where it is used).

    Returns:
        ``num`` generators, one per sample ``start, ..., start + num - 1``.
    """
    if num < 0 or start < 0:
        raise ValueError(f"sample_generators: num and start must be >= 0, got num={num}, start={start}")
    return [torch.Generator(device=device).manual_seed(mix_seed(seed, start + i)) for i in range(num)]


__all__ = ["mix_seed", "sample_generators"]
