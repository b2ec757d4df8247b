"""SEDD score entropy: an upper bound on MDLM's NELBO of the normalised model, equal when the scores are normalised."""

from __future__ import annotations

import math

import torch

import polydiff
from polydiff_text.score_entropy import score_entropy_loss

V, L = 5, 12


class Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x, t):
        return self.logits


def _pair(logits, seed=0):
    model = polydiff.Denoiser(Fixed(logits), polydiff.processes.get("masked", vocab_size=V), "x0_logits")
    x0 = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    # the same generator state gives the same masks in both losses
    se = score_entropy_loss(model, x0, t=t, generator=torch.Generator().manual_seed(1))
    ce = model.loss(x0, t=t, generator=torch.Generator().manual_seed(1))
    return se.per_sample, ce.per_sample


def test_equal_to_mdlm_nelbo_when_normalised():
    logits = torch.randn(4, L, V, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    se, ce = _pair(torch.log_softmax(logits, -1))
    assert torch.allclose(se, ce.to(se.dtype), atol=1e-10)


def test_upper_bound_otherwise():
    logits = 3 * torch.randn(4, L, V, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    se, ce = _pair(logits)
    assert (se >= ce.to(se.dtype) - 1e-10).all() and (se > ce.to(se.dtype)).any()


def test_sedd_recipe_trains(tmp_path):
    from polydiff.config import resolve_config
    from polydiff.recipes import RunDir
    from polydiff.training import train
    from polydiff_text.recipes import SEDDRecipe

    r = SEDDRecipe()
    cfg = resolve_config(r, preset="tiny", overrides=["train.steps=3", "train.batch_size=4", "data.block_size=16",
                                                      "data.max_docs=1", "train.checkpoint_every=3"])
    res = train(r, cfg, RunDir(tmp_path / "run"), progress=False)
    assert res.steps == 3 and res.bad_steps == 0 and math.isfinite(res.final_loss)
