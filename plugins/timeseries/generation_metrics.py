"""TimeGAN-protocol generation metrics in torch: discriminative, predictive, context-FID, correlational.

Windows are arrays ``(N, L, C)`` in scaled units. Each evaluator is trained briefly with fixed seeds
(``iters`` and ``runs`` are parameters so tests stay fast; the reference protocol uses 2000/5000
iterations and 5 runs):

* discriminative: a 1-layer GRU classifier (hidden ``max(C // 2, 1)``... at least 4) on an 80/20 split of
  real vs synthetic; score ``|accuracy - 0.5|``;
* predictive (TSTR): a GRU trained on synthetic windows to predict the last feature one step ahead
  from the other features (from all features when ``C = 1``); score = MAE on real windows;
* context-FID: a TS2Vec-style dilated-convolution encoder trained contrastively on real windows;
  FID between max-pooled encodings of real and synthetic windows (``scipy.linalg.sqrtm``);
* correlational: ``sum |corr_fake - corr_real| / 10`` over lower-triangular channel pairs of lag-0
  cross-correlations (Diffusion-TS's definition).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _GRUHead(nn.Module):
    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        self.gru = nn.GRU(c_in, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, last = self.gru(x)
        return h, last[-1]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def discriminative_runs(real: np.ndarray, fake: np.ndarray, *, iters: int = 2000, runs: int = 5, batch: int = 128, seed: int = 0) -> np.ndarray:
    """The ``runs`` values whose mean is :func:`discriminative_score` ``(runs,)``."""
    n = min(len(real), len(fake))
    scores = []
    for r in range(runs):
        g = torch.Generator().manual_seed(seed + r)
        torch.manual_seed(seed + r)
        x = torch.cat([_t(real[:n]), _t(fake[:n])])
        y = torch.cat([torch.ones(n), torch.zeros(n)])
        perm = torch.randperm(2 * n, generator=g)
        cut = int(0.8 * 2 * n)
        tr, te = perm[:cut], perm[cut:]
        c = x.shape[-1]
        model = _GRUHead(c, max(c // 2, 4), 1)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(iters):
            idx = tr[torch.randint(len(tr), (min(batch, len(tr)),), generator=g)]
            logit = model.fc(model(x[idx])[1]).squeeze(-1)
            loss = nn.functional.binary_cross_entropy_with_logits(logit, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = ((model.fc(model(x[te])[1]).squeeze(-1) > 0).float() == y[te]).float().mean()
        scores.append(abs(float(acc) - 0.5))
    return np.asarray(scores, dtype=np.float64)


def discriminative_score(real: np.ndarray, fake: np.ndarray, *, iters: int = 2000, runs: int = 5, batch: int = 128, seed: int = 0) -> float:
    """Mean over ``runs`` of ``|test accuracy - 0.5|`` of a post-hoc GRU real/fake classifier."""
    return float(discriminative_runs(real, fake, iters=iters, runs=runs, batch=batch, seed=seed).mean())


def predictive_runs(real: np.ndarray, fake: np.ndarray, *, iters: int = 5000, runs: int = 5, batch: int = 128, seed: int = 0) -> np.ndarray:
    """The ``runs`` values whose mean is :func:`predictive_score` ``(runs,)``."""
    def split(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = _t(a)
        inp = x[:, :-1, :-1] if x.shape[-1] > 1 else x[:, :-1]
        return inp, x[:, 1:, -1:]

    fx, fy = split(fake)
    rx, ry = split(real)
    scores = []
    for r in range(runs):
        g = torch.Generator().manual_seed(seed + r)
        torch.manual_seed(seed + r)
        c = fx.shape[-1]
        model = _GRUHead(c, max(c // 2, 4), 1)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        for _ in range(iters):
            idx = torch.randint(len(fx), (min(batch, len(fx)),), generator=g)
            pred = torch.sigmoid(model.fc(model(fx[idx])[0]))
            loss = (pred - fy[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = torch.sigmoid(model.fc(model(rx)[0]))
            scores.append(float((pred - ry).abs().mean()))
    return np.asarray(scores, dtype=np.float64)


def predictive_score(real: np.ndarray, fake: np.ndarray, *, iters: int = 5000, runs: int = 5, batch: int = 128, seed: int = 0) -> float:
    """Train-on-synthetic, test-on-real one-step-ahead MAE of the last feature (mean over ``runs``)."""
    return float(predictive_runs(real, fake, iters=iters, runs=runs, batch=batch, seed=seed).mean())


class TSEncoder(nn.Module):
    """TS2Vec-style encoder: input projection, dilated residual convolutions, per-step representations ``(B, L, D)``."""

    def __init__(self, c_in: int, hidden: int = 32, out: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(c_in, hidden)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=2**i, dilation=2**i) for i in range(depth))
        self.out = nn.Conv1d(hidden, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x).transpose(1, 2)
        for conv in self.convs:
            h = h + nn.functional.gelu(conv(h))
        return self.out(h).transpose(1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Full-series encoding: max-pool over time, ``(B, D)``."""
        return self(x).max(dim=1).values


def _contrastive(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance + temporal contrastive losses on two views ``(B, T, D)`` of the same steps."""
    b, t, _ = z1.shape
    loss = z1.new_zeros(())
    if b > 1:  # instance: same step, other series are negatives
        z = torch.cat([z1, z2], 0).transpose(0, 1)  # (T, 2B, D)
        sim = z @ z.transpose(1, 2)
        logits = torch.tril(sim, -1)[:, :, :-1] + torch.triu(sim, 1)[:, :, 1:]
        logits = -torch.log_softmax(logits, -1)
        i = torch.arange(b)
        loss = loss + (logits[:, i, b + i - 1].mean() + logits[:, b + i, i].mean()) / 2
    if t > 1:  # temporal: same series, other steps are negatives
        z = torch.cat([z1, z2], 1)  # (B, 2T, D)
        sim = z @ z.transpose(1, 2)
        logits = torch.tril(sim, -1)[:, :, :-1] + torch.triu(sim, 1)[:, :, 1:]
        logits = -torch.log_softmax(logits, -1)
        i = torch.arange(t)
        loss = loss + (logits[:, i, t + i - 1].mean() + logits[:, t + i, i].mean()) / 2
    return loss


def train_encoder(real: np.ndarray, *, iters: int = 500, batch: int = 8, seed: int = 0) -> TSEncoder:
    """Train a :class:`TSEncoder` on real windows with random overlapping crops (TS2Vec's scheme, one scale)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = _t(real)
    n, L, c = x.shape
    enc = TSEncoder(c)
    opt = torch.optim.AdamW(enc.parameters(), 1e-3)
    for _ in range(iters):
        xb = x[torch.randint(n, (min(batch, n),), generator=g)]
        crop = int(torch.randint(2, L + 1, (1,), generator=g))
        a1 = int(torch.randint(0, L - crop + 1, (1,), generator=g))
        lo = int(torch.randint(0, a1 + 1, (1,), generator=g))
        hi = int(torch.randint(a1 + crop, L + 1, (1,), generator=g))
        z1 = enc(xb[:, lo:a1 + crop])[:, a1 - lo:]
        z2 = enc(xb[:, a1:hi])[:, :crop]
        loss = _contrastive(z1, z2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return enc.eval()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def context_fid_runs(real: np.ndarray, fake: np.ndarray, *, iters: int = 500, runs: int = 5, seed: int = 0) -> np.ndarray:
    """The ``runs`` values whose mean is :func:`context_fid` ``(runs,)``."""
    vals = []
    for r in range(runs):
        enc = train_encoder(real, iters=iters, seed=seed + r)
        with torch.no_grad():
            vals.append(frechet_distance(enc.encode(_t(real)).numpy().astype(np.float64), enc.encode(_t(fake)).numpy().astype(np.float64)))
    return np.asarray(vals, dtype=np.float64)


def context_fid(real: np.ndarray, fake: np.ndarray, *, iters: int = 500, runs: int = 5, seed: int = 0) -> float:
    """Mean over ``runs`` of the FID between encodings of real and synthetic windows."""
    return float(context_fid_runs(real, fake, iters=iters, runs=runs, seed=seed).mean())


def _cross_corr(x: np.ndarray) -> np.ndarray:
    """Lag-0 cross-correlation of channels, averaged over windows and time: ``(C, C)``."""
    x = (x - x.mean(axis=(0, 1))) / (x.std(axis=(0, 1)) + 1e-12)
    flat = x.reshape(-1, x.shape[-1])
    return flat.T @ flat / len(flat)


def correlational_runs(real: np.ndarray, fake: np.ndarray, *, runs: int = 5, seed: int = 0) -> np.ndarray:
    """The ``runs`` values whose mean is :func:`correlational_score` ``(runs,)``."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    k = max(n // 5, 2)
    c = real.shape[-1]
    tril = np.tril_indices(c, -1)
    vals = []
    for _ in range(runs):
        i, j = rng.choice(len(real), k, replace=False), rng.choice(len(fake), k, replace=False)
        vals.append(np.abs(_cross_corr(fake[j])[tril] - _cross_corr(real[i])[tril]).sum() / 10.0)
    return np.asarray(vals, dtype=np.float64)


def correlational_score(real: np.ndarray, fake: np.ndarray, *, runs: int = 5, seed: int = 0) -> float:
    """``sum_{i>j} |corr_fake - corr_real| / 10`` on random subsets of size ``n / 5`` (mean over ``runs``)."""
    return float(correlational_runs(real, fake, runs=runs, seed=seed).mean())


__all__ = ["TSEncoder", "context_fid", "context_fid_runs", "correlational_runs", "correlational_score", "discriminative_runs",
           "discriminative_score", "frechet_distance", "predictive_runs", "predictive_score", "train_encoder"]
