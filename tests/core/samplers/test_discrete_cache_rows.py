"""The cached sampler evaluates only the samples whose tokens changed, and still equals ancestral sampling."""

from __future__ import annotations

import torch

import polydiff
from polydiff import processes
from polydiff.spaces import MaskedSpace

V, L, B = 5, 6, 8


class RowCountingNet(torch.nn.Module):
    """A time-independent network whose logits depend on every token of its own sample only."""

    time_independent = True

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(V + 1, V, generator=g, dtype=torch.float64))
        self.rows = 0

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.rows += x_t.shape[0]
        h = self.w[x_t]  # (b, L, V)
        return h + h.mean(dim=1, keepdim=True)


def _run(sampler: str, net: RowCountingNet, space=None):
    p = processes.get("masked", vocab_size=V)
    model = polydiff.Denoiser(net, p, prediction="x0_logits")
    gens = [torch.Generator().manual_seed(100 + i) for i in range(B)]
    return polydiff.sample(model, shape=(B, L), sampler=sampler, steps=64, generator=gens, space=space)


def test_per_sample_cache_equals_ancestral_with_fewer_row_evaluations() -> None:
    full, cached_net = RowCountingNet(), RowCountingNet()
    a = _run("ancestral", full)
    c = _run("cached", cached_net)
    assert torch.equal(a.x, c.x)
    assert full.rows == B * 64
    # at most L reveals per sample, so each sample is evaluated at most L + 1 times (the first call included)
    assert cached_net.rows <= B * (L + 1)
    assert c.nfe <= a.nfe


def test_per_sample_cache_on_a_padded_space() -> None:
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[::2, 4:] = False
    full, cached_net = RowCountingNet(), RowCountingNet()
    a = _run("ancestral", full, MaskedSpace(mask))
    c = _run("cached", cached_net, MaskedSpace(mask))
    assert torch.equal(a.x, c.x)
    assert cached_net.rows <= B * (L + 1)
