"""SEDD's denoising score entropy for the absorbing process, in the scale-by-sigma parameterisation.

The network's outputs ``l`` (``(B, L, V)``) are unnormalised log concrete scores divided by
``r_t = alpha_t / (1 - alpha_t)`` (SEDD's ``scale_by_sigma``: ``log s = l - log(e^sigma - 1)``). At a
masked position with clean token ``x0`` the only non-zero ratio ``q_t(y)/q_t(mask)`` is ``r_t`` (at
``y = x0``), so the score entropy ``sum_y s_y - r log s_x0 + r (log r - 1)`` weighted by
``d sigma_bar / dt = -alpha'/alpha`` becomes

    ``-alpha' / (1 - alpha) * (sum_y exp(l_y) - l_x0 - 1)``.

Writing ``Z = sum exp(l)``, the bracket is ``-log softmax(l)_x0 + (Z - log Z - 1) >= -log softmax(l)_x0``:
the score-entropy loss upper-bounds MDLM's NELBO of the normalised model (equality when ``Z = 1``),
so the same samplers (which normalise the logits) and the same NELBO evaluation apply (RADD, Ou et al. 2025).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import polydiff
from polydiff.losses import sample_time
from polydiff.spaces import infer_space


def score_entropy_loss(model: Any, x_0: Tensor, *, generator: Any = None, t: Tensor | None = None,
                       time_sampling: str = "stratified") -> polydiff.LossOutput:
    """Score-entropy loss of a masked-process ``Denoiser`` whose network returns scaled log scores ``(B, L, V)``.

    Returns:
        ``LossOutput`` with ``per_sample`` in nats per sequence ``(B,)``.
    """
    process = model.process
    if getattr(process, "mask_id", None) is None:
        raise ValueError("score entropy is implemented for the masked (absorbing) process")
    B = x_0.shape[0]
    if t is None:
        t = sample_time(process, B, kind=time_sampling, generator=generator, device=x_0.device)
    noised = process.noise(x_0, t, generator=generator, space=infer_space(x_0))
    out = model(noised.x_t, t).float()
    v = process.schedule(t.to(torch.float64))  # float64: 1 - alpha_t cancels near t = 0
    w = (-v.d_alpha / (1.0 - v.alpha).clamp(min=torch.finfo(torch.float64).tiny)).to(out.dtype)  # (B,)
    l_x0 = out.gather(-1, x_0.unsqueeze(-1)).squeeze(-1)
    bracket = out.exp().sum(-1) - l_x0 - 1.0
    masked = noised.x_t == process.mask_id
    space = infer_space(x_0)
    # where() (not a product) keeps an infinite weight at t -> 0 away from the unmasked tokens
    per_token = torch.where(masked, bracket * space.expand(w, bracket), torch.zeros_like(bracket))
    per = space.sum(per_token)
    count = space.count(per_token).to(per.dtype)
    return polydiff.LossOutput(loss=per.sum() / count.sum(), per_sample=per, count=count, t=t)


__all__ = ["score_entropy_loss"]
