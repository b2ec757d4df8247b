"""A token n-gram language model with interpolated Witten-Bell smoothing: a scorer that needs no training run.

Generative perplexity is defined under the AR baseline (``eval.ar_run``). When a run has none, the
text recipes score their samples under this model instead, fitted in seconds on the run's own
training split, and report it under its own name (``gen_ppl_ngram``), never as ``gen_ppl``.

For a context ``h`` of ``k`` tokens (``h'``: its last ``k - 1``), with ``c(h, w)`` the training
count of ``h`` followed by ``w``, ``c(h) = sum_w c(h, w)`` and ``n(h)`` the number of distinct ``w``
seen after ``h``::

    P_k(w | h) = (c(h, w) + n(h) P_{k-1}(w | h')) / (c(h) + n(h))      if c(h) > 0
               = P_{k-1}(w | h')                                       otherwise
    P_0(w)     = (c(w) + 1) / (N + V)                                  (add-one unigram)

Every ``P_k(. | h)`` is a distribution over the ``V`` tokens (tested by summing it). Contexts are
packed into int64 keys ``sum_j id_j V^j``, so ``order`` is capped at ``floor(62 / log2 V)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass(frozen=True)
class ContextTable:
    """Counts for contexts of one length ``k`` (sorted int64 keys).

    Attributes:
        contexts: keys of seen contexts ``(H,)``. context_counts: ``c(h)`` ``(H,)``. followers: ``n(h)`` ``(H,)``.
        pairs: keys ``h * V + w`` of seen (context, token) pairs ``(P,)``. pair_counts: ``c(h, w)`` ``(P,)``.
    """

    contexts: np.ndarray
    context_counts: np.ndarray
    followers: np.ndarray
    pairs: np.ndarray
    pair_counts: np.ndarray


@dataclass(frozen=True)
class NGramLM:
    """An interpolated Witten-Bell n-gram model over ``vocab`` tokens.

    Attributes:
        order: ``n`` (the longest context has ``n - 1`` tokens). vocab: ``V``.
        unigram: ``P_0`` ``(V,)`` float64. tables: one :class:`ContextTable` per context length ``1 .. n - 1``.
    """

    order: int
    vocab: int
    unigram: np.ndarray
    tables: tuple[ContextTable, ...]

    def token_nll(self, ids: Tensor | np.ndarray) -> np.ndarray:
        """Negative log-likelihood (nats) of every token of ``ids`` ``(N, L)`` -> ``(N, L)`` float64.

        Token ``i`` is conditioned on the (at most ``order - 1``) tokens before it in its own row.
        """
        x = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids, dtype=np.int64)
        if x.ndim != 2:
            raise ValueError(f"ids must be (N, L), got shape {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.vocab):
            raise ValueError(f"token ids must lie in [0, {self.vocab}), got [{x.min()}, {x.max()}]")
        return -np.log(self._prob(x))

    def prob_table(self, context: list[int]) -> np.ndarray:
        """``P(. | context)`` ``(V,)`` for one context (its last ``order - 1`` tokens are used)."""
        ctx = list(context)[-(self.order - 1):] if self.order > 1 else []
        rows = np.array([ctx + [w] for w in range(self.vocab)], dtype=np.int64)
        return self._prob(rows)[:, -1]

    def _prob(self, x: np.ndarray) -> np.ndarray:
        n, L = x.shape
        V = self.vocab
        p = self.unigram[x]
        key = np.zeros((n, L), dtype=np.int64)  # context of length k ending before position i
        for k, tab in enumerate(self.tables, start=1):
            # context of length k: tokens i-k .. i-1, packed with the nearest token as the lowest digit
            shifted = np.zeros((n, L), dtype=np.int64)
            shifted[:, k:] = x[:, : L - k]
            key = key + shifted * (V ** (k - 1))
            valid = np.zeros((n, L), dtype=bool)
            valid[:, k:] = True
            h = key[valid]
            w = x[valid]
            c_h, n_h = _lookup(tab.contexts, h, tab.context_counts, tab.followers)
            (c_hw,) = _lookup(tab.pairs, h * V + w, tab.pair_counts)
            seen = c_h > 0
            pv = p[valid]
            pv = np.where(seen, (c_hw + n_h * pv) / np.maximum(c_h + n_h, 1), pv)
            p[valid] = pv
        return p


def _lookup(keys: np.ndarray, query: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Values at ``query`` in sorted ``keys`` (0 where absent)."""
    pos = np.searchsorted(keys, query)
    pos_c = np.minimum(pos, max(len(keys) - 1, 0))
    hit = (pos < len(keys)) & (keys[pos_c] == query) if len(keys) else np.zeros(query.shape, dtype=bool)
    return tuple(np.where(hit, v[pos_c], 0).astype(np.float64) if len(v) else np.zeros(query.shape) for v in values)


def max_order(vocab: int) -> int:
    """The largest order whose (context, token) keys fit in int64."""
    return max(1, int(62 // math.log2(max(vocab, 2))))


def fit_ngram(stream: Tensor | np.ndarray, vocab: int, order: int = 6) -> NGramLM:
    """Count n-grams of the token stream ``(T,)`` (ids in ``[0, vocab)``); ``order`` is capped by :func:`max_order`."""
    s = np.asarray(stream.cpu() if isinstance(stream, Tensor) else stream, dtype=np.int64).ravel()
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    if s.size == 0:
        raise ValueError("cannot fit an n-gram model on an empty token stream")
    if s.min() < 0 or s.max() >= vocab:
        raise ValueError(f"token ids must lie in [0, {vocab}), got [{s.min()}, {s.max()}]")
    order = min(order, max_order(vocab))
    V, T = vocab, len(s)
    unigram = (np.bincount(s, minlength=V).astype(np.float64) + 1.0) / (T + V)
    tables = []
    key = np.zeros(T, dtype=np.int64)
    for k in range(1, order):
        if T <= k:
            break
        shifted = np.zeros(T, dtype=np.int64)
        shifted[k:] = s[: T - k]
        key = key + shifted * (V ** (k - 1))
        h, w = key[k:], s[k:]
        pairs, pair_counts = np.unique(h * V + w, return_counts=True)
        contexts, context_counts = np.unique(h, return_counts=True)
        _, followers = np.unique(pairs // V, return_counts=True)  # pairs are sorted by context first
        tables.append(ContextTable(contexts, context_counts, followers, pairs, pair_counts))
    return NGramLM(order=len(tables) + 1, vocab=V, unigram=unigram, tables=tuple(tables))


__all__ = ["ContextTable", "NGramLM", "fit_ngram", "max_order"]
