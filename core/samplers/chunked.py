"""Drawing many samples in chunks: per-sample generators, NFE counting, progress.

A request for ``num`` samples is cut into chunks of at most ``batch_size``; sample ``i`` always gets
the generator ``mix_seed(seed, i)`` (:func:`polydiff.seeding.sample_generators`), so the result does
not depend on ``batch_size``. Recipes call :func:`sample_in_chunks` with a ``draw`` function that
samples one chunk; the chunks are concatenated along the batch dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..seeding import sample_generators
from ..state import StateDict
from ..types import State


@dataclass(frozen=True)
class Chunk:
    """One chunk of a request: samples ``lo .. hi - 1`` with one generator each (on the request's device)."""

    lo: int
    hi: int
    generators: list[torch.Generator]

    @property
    def size(self) -> int:
        """Number of samples in the chunk."""
        return self.hi - self.lo


@dataclass(frozen=True)
class ChunkedSamples:
    """The samples of a chunked request.

    Attributes:
        x: every chunk's state concatenated along dim 0: ``(num, ...)`` (a :class:`StateDict` of such
            tensors for composite states).
        nfe: network evaluations each sample received (the largest over chunks).
        total_nfe: network evaluations over all chunks (the cost of the request).
        chunks: number of chunks drawn.
    """

    x: State
    nfe: int
    total_nfe: int
    chunks: int


def sample_in_chunks(
    draw: Callable[[Chunk], Any],
    *,
    num: int,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    on_chunk: Callable[[int, int], None] | None = None,
) -> ChunkedSamples:
    """Draw ``num`` samples with ``draw(chunk)`` in chunks of at most ``batch_size``.

    Args:
        draw: samples one :class:`Chunk` (``chunk.size`` samples with ``chunk.generators``) and returns a
            :class:`~polydiff.samplers.base.SampleResult` (or anything with ``.x`` and ``.nfe``), or a
            ``(x, nfe)`` pair. ``x`` has the chunk's samples on dim 0.
        num: samples in all (``>= 1``). batch_size: largest chunk (``>= 1``).
        seed: base seed; sample ``i`` uses ``mix_seed(seed, i)``.
        device: where the generators live (the model's device).
        on_chunk: called as ``on_chunk(done, num)`` after each chunk (progress reporting).

    Raises:
        ValueError: ``num`` or ``batch_size`` below 1.
    """
    if num < 1:
        raise ValueError(f"the number of samples must be >= 1, got {num}")
    if batch_size < 1:
        raise ValueError(f"the sampling batch size must be >= 1, got {batch_size}")
    outs: list[State] = []
    nfe = total = chunks = 0
    for lo in range(0, num, batch_size):
        hi = min(lo + batch_size, num)
        res = draw(Chunk(lo, hi, sample_generators(seed, hi - lo, start=lo, device=device)))
        x, n = res if isinstance(res, tuple) else (res.x, res.nfe)
        outs.append(x.detach() if isinstance(x, Tensor) else x)
        nfe, total, chunks = max(nfe, int(n)), total + int(n), chunks + 1
        if on_chunk is not None:
            on_chunk(hi, num)
    return ChunkedSamples(x=_concat(outs), nfe=nfe, total_nfe=total, chunks=chunks)


def _concat(outs: list[State]) -> State:
    """Concatenate chunk states along dim 0 (tensors, or composite states key by key)."""
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.cat(outs)  # type: ignore[arg-type]
    if isinstance(first, StateDict):
        return StateDict({k: torch.cat([o[k] for o in outs]) for k in first})  # type: ignore[index]
    raise TypeError(f"sample_in_chunks: cannot concatenate chunk states of type {type(first).__name__}")


__all__ = ["Chunk", "ChunkedSamples", "sample_in_chunks"]
