"""The Witten-Bell n-gram scorer: proper distributions, the textbook recursion, consistency on a Markov chain."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from polydiff_text.ngram import fit_ngram, max_order


def _reference_prob(stream: list[int], V: int, order: int, ctx: list[int], w: int) -> float:
    """The defining recursion written out with dictionaries (slow, obviously right)."""
    T = len(stream)
    p = (stream.count(w) + 1.0) / (T + V)
    for k in range(1, order):
        if len(ctx) < k:
            break
        h = tuple(ctx[len(ctx) - k:])
        grams = Counter(tuple(stream[i - k:i + 1]) for i in range(k, T))
        c_h = sum(c for g, c in grams.items() if g[:-1] == h)
        if c_h == 0:
            continue
        n_h = sum(1 for g in grams if g[:-1] == h)
        p = (grams.get((*h, w), 0) + n_h * p) / (c_h + n_h)
    return p


def test_matches_the_recursion_and_sums_to_one():
    rng = np.random.default_rng(0)
    V, order = 5, 4
    stream = rng.integers(0, V, 400).tolist() + [0, 1, 2, 3] * 20  # some repeated contexts
    lm = fit_ngram(np.array(stream), V, order)
    assert lm.order == order
    for ctx in ([], [2], [0, 1], [0, 1, 2], [4, 4, 4, 4, 4], [1, 2, 3, 0, 1]):
        table = lm.prob_table(ctx)
        assert abs(table.sum() - 1.0) < 1e-12
        ref = [_reference_prob(stream, V, order, ctx[-(order - 1):], w) for w in range(V)]
        np.testing.assert_allclose(table, ref, rtol=1e-12)
    # token_nll of a row is the sum of its conditionals (each token sees only its own row's past)
    row = np.array([[1, 2, 3, 0, 4, 4]])
    nll = lm.token_nll(row)
    expect = [-np.log(_reference_prob(stream, V, order, row[0, max(0, i - order + 1):i].tolist(), row[0, i])) for i in range(6)]
    np.testing.assert_allclose(nll[0], expect, rtol=1e-12)


def test_consistent_on_a_markov_chain():
    """Order-2 chain: with enough data the 3-gram conditionals approach the true ones and the
    cross-entropy of fresh text approaches the entropy rate from above."""
    rng = np.random.default_rng(1)
    V = 4
    trans = rng.dirichlet(np.full(V, 0.5), size=(V, V))  # P(x_t | x_{t-2}, x_{t-1})
    T = 200_000
    x = np.zeros(T, dtype=np.int64)
    u = rng.random(T)
    cum = trans.cumsum(-1)
    for t in range(2, T):
        x[t] = min(int(np.searchsorted(cum[x[t - 2], x[t - 1]], u[t])), V - 1)
    lm = fit_ngram(x[: T // 2], V, order=3)
    train = x[: T // 2]
    for a in range(V):
        for b in range(V):
            c_ab = int(((train[:-2] == a) & (train[1:-1] == b)).sum())
            # 5 binomial standard errors (at most 0.5 / sqrt(c)) plus the smoothing weight n(h) / (c + n(h))
            tol = 5 * 0.5 / np.sqrt(c_ab) + V / (c_ab + V)
            np.testing.assert_allclose(lm.prob_table([a, b]), trans[a, b], atol=tol)
    # entropy rate under the empirical pair distribution of the held-out half
    held = x[T // 2:]
    true_nll = -np.log(trans[held[:-2], held[1:-1], held[2:]]).mean()
    model_nll = lm.token_nll(held[None])[0, 2:].mean()
    assert true_nll - 0.01 < model_nll < true_nll + 0.02


def test_orders_are_capped_and_bad_input_is_refused():
    assert max_order(65) == 10 and max_order(8192) == 4
    lm = fit_ngram(np.arange(100) % 7, 8192, order=6)
    assert lm.order == 4
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        fit_ngram(np.array([0, 9]), 8)
    with pytest.raises(ValueError, match="empty"):
        fit_ngram(np.array([], dtype=np.int64), 8)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        fit_ngram(np.array([0, 1, 2]), 3).token_nll(np.array([0, 1]))
