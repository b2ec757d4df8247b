"""Text metrics: diffusion NELBO (bits per token / char), exact AR likelihood, generative perplexity, unigram entropy.

* The NELBO of a masked diffusion model is estimated per sequence by Monte Carlo over ``t`` with
  ``mc`` stratified (antithetic) times per sequence, using the model's own continuous-time loss
  (``Denoiser.loss(x0, t=...)``). It upper-bounds the negative log-likelihood in expectation.
* Generative perplexity: samples scored by a causal reference model; reported both as the mean of
  per-sample perplexities (SEDD) and as the exponential of the token-weighted mean NLL (MDLM).
  Always reported with the per-sample unigram entropy (nats) of the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

LN2 = math.log(2.0)


@dataclass(frozen=True)
class NLLResult:
    """Negative log-likelihood (or its bound) per token.

    Attributes:
        nats_per_token: mean over all tokens. stderr: standard error of that mean (over sequences).
        tokens: number of tokens scored. sequences: number of sequences.
    """

    nats_per_token: float
    stderr: float
    tokens: int
    sequences: int

    @property
    def bits_per_token(self) -> float:
        return self.nats_per_token / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_token)


def _summarise(per_seq_nats: Tensor, tokens_per_seq: int) -> NLLResult:
    per_tok = per_seq_nats.to(torch.float64) / tokens_per_seq
    n = per_tok.numel()
    se = float(per_tok.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return NLLResult(float(per_tok.mean()), se, n * tokens_per_seq, n)


def diffusion_nelbo(model: Any, blocks: Tensor, *, mc: int = 16, seed: int = 0, batch_size: int = 64) -> NLLResult:
    """Monte-Carlo NELBO (nats per token) of a masked diffusion ``model`` on ``blocks`` ``(N, L)``; see
    :func:`nelbo_per_sequence`."""
    return _summarise(nelbo_per_sequence(model, blocks, mc=mc, seed=seed, batch_size=batch_size), blocks.shape[1])


@torch.no_grad()
def nelbo_per_sequence(model: Any, blocks: Tensor, *, mc: int = 16, seed: int = 0, batch_size: int = 64) -> Tensor:
    """Monte-Carlo NELBO (nats) of each sequence of ``blocks`` ``(N, L)``, shape ``(N,)`` float64.

    Each sequence gets ``mc`` stratified times ``t_k = (u + k) / mc`` (one uniform ``u`` per sequence).
    For a uniform-kernel model (no mask state) this is the T-step ELBO, as in training."""
    if mc < 1:
        raise ValueError(f"mc must be >= 1, got {mc}")
    g = torch.Generator().manual_seed(seed)
    g_dev = torch.Generator(device=blocks.device).manual_seed(seed + 1)  # masking noise, on the data's device
    # the training objective: ``nelbo`` for the masked kernel, the T-step ``elbo`` for the uniform one
    objective = {"discrete_objective": "nelbo" if getattr(model.process, "mask_id", None) is not None else "elbo"}
    was_training = model.training
    model.eval()
    totals = []
    try:
        for b0 in range(0, len(blocks), batch_size):
            x0 = blocks[b0 : b0 + batch_size]
            nb = len(x0)
            u = torch.rand(nb, generator=g, dtype=torch.float64)
            acc = torch.zeros(nb, dtype=torch.float64, device=x0.device)
            for k in range(mc):
                t = ((u + k) / mc).clamp(1e-6, 1.0).to(device=x0.device, dtype=torch.float32)
                out = model.loss(x0, t=t, generator=g_dev, **objective)
                acc += out.per_sample.to(torch.float64)
            totals.append((acc / mc).cpu())
    finally:
        model.train(was_training)
    return torch.cat(totals)


@torch.no_grad()
def ar_token_nll(net: Any, ids: Tensor, bos_id: int) -> Tensor:
    """Per-token NLL (nats) of ``ids`` ``(N, L)`` under a causal ``net``, shape ``(N, L)``."""
    inp = torch.cat([torch.full((ids.shape[0], 1), bos_id, dtype=ids.dtype, device=ids.device), ids[:, :-1]], dim=1)
    logits = net(inp, torch.zeros(ids.shape[0], device=ids.device)).float()
    return -torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def ar_nll(net: Any, blocks: Tensor, bos_id: int, batch_size: int = 64) -> NLLResult:
    """Exact NLL (nats per token) of ``blocks`` ``(N, L)`` under a causal model."""
    was = net.training
    net.eval()
    try:
        per = torch.cat([ar_token_nll(net, blocks[i : i + batch_size], bos_id).sum(-1).cpu() for i in range(0, len(blocks), batch_size)])
    finally:
        net.train(was)
    return _summarise(per, blocks.shape[1])


def unigram_entropy(ids: Tensor) -> Tensor:
    """Shannon entropy (nats) of each sequence's token histogram; ``ids`` ``(N, L)`` -> ``(N,)``."""
    out = []
    for row in ids:
        _, counts = torch.unique(row, return_counts=True)
        p = counts.to(torch.float64) / counts.sum()
        out.append(-(p * p.log()).sum())
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


@dataclass(frozen=True)
class GenPPL:
    """Generative perplexity under a reference causal model, with the samples' unigram entropy.

    Attributes:
        mean_sample_ppl: mean over samples of ``exp(mean token NLL)`` (SEDD's aggregation).
        token_ppl: ``exp`` of the token-weighted mean NLL (MDLM's aggregation).
        entropy: mean per-sample unigram entropy (nats). samples: number of samples scored.
    """

    mean_sample_ppl: float
    token_ppl: float
    entropy: float
    samples: int


@torch.no_grad()
def generative_perplexity(net: Any, ids: Tensor, bos_id: int, *, context: int | None = None, free: Tensor | None = None) -> GenPPL:
    """Score samples ``ids`` ``(N, L)`` under a causal ``net`` (in windows of ``context`` tokens).

    ``free`` (``(L,)`` bool) restricts the scored tokens to generated positions (prompt/infill excluded).
    """
    was = net.training
    net.eval()
    try:
        L = ids.shape[1]
        context = context or L
        nll = torch.cat([ar_token_nll(net, ids[:, s : s + context], bos_id) for s in range(0, L, context)], dim=1)
    finally:
        net.train(was)
    w = torch.ones(L, dtype=torch.float64) if free is None else free.to(torch.float64)
    per = (nll.cpu().to(torch.float64) * w).sum(-1) / w.sum()
    ent = unigram_entropy(ids.cpu())
    return GenPPL(float(per.exp().mean()), float(per.mean().exp()), float(ent.mean()), int(ids.shape[0]))


__all__ = ["GenPPL", "LN2", "NLLResult", "ar_nll", "ar_token_nll", "diffusion_nelbo", "nelbo_per_sequence", "generative_perplexity", "unigram_entropy"]
