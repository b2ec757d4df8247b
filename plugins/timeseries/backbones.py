"""Networks for windows ``(B, L, C)``: a Diffusion-TS-style interpretable transformer and a CSDI-style model.

Both are called as ``net(x_t, t, **cond)`` with ``t`` of shape ``(B,)`` in ``[0, 1]`` and return an
``x0`` estimate shaped like ``x_t`` (use ``Denoiser(net, process, prediction="x0")``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of ``1000 t``: ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    ang = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class TrendBlock(nn.Module):
    """Polynomial trend: coefficients from the time-pooled hidden state times a basis ``(L, degree + 1)``."""

    def __init__(self, d_model: int, channels: int, length: int, degree: int = 3) -> None:
        super().__init__()
        tt = torch.linspace(0, 1, length)
        self.register_buffer("basis", torch.stack([tt**k for k in range(degree + 1)], dim=-1))  # (L, P)
        self.coef = nn.Linear(d_model, (degree + 1) * channels)
        self.channels = channels

    def forward(self, h: Tensor) -> Tensor:
        c = self.coef(h.mean(dim=1)).reshape(h.shape[0], -1, self.channels)  # (B, P, C)
        return torch.einsum("lp,bpc->blc", self.basis, c)


class SeasonBlock(nn.Module):
    """Fourier seasonality: project to channels, keep the top-k rFFT frequencies per channel, rebuild."""

    def __init__(self, d_model: int, channels: int, length: int, factor: float = 1.0) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, channels)
        self.length = length
        self.k = max(1, min(length // 2, int(factor * math.log(length))))

    def forward(self, h: Tensor) -> Tensor:
        s = self.proj(h)  # (B, L, C)
        f = torch.fft.rfft(s.float(), dim=1)  # (B, F, C)
        amp = f.abs()
        amp[:, 0] = 0.0  # the mean belongs to the trend
        idx = amp.topk(self.k, dim=1).indices
        keep = torch.zeros_like(amp, dtype=torch.bool).scatter_(1, idx, True)
        return torch.fft.irfft(torch.where(keep, f, torch.zeros_like(f)), n=self.length, dim=1).to(h.dtype)


class DecoderBlock(nn.Module):
    """Transformer decoder layer (self + cross attention) with trend and season heads."""

    def __init__(self, d_model: int, n_heads: int, channels: int, length: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True)
        self.trend = TrendBlock(d_model, channels, length)
        self.season = SeasonBlock(d_model, channels, length)

    def forward(self, h: Tensor, memory: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.layer(h, memory)
        return h, self.trend(h), self.season(h)


class DiffusionTSNet(nn.Module):
    """Diffusion-TS-style encoder-decoder: ``x0 = sum(trend) + sum(season) + residual``.

    Args:
        length: window length ``L``; channels: features ``C``; d_model, n_heads, enc_layers, dec_layers: sizes.
    """

    def __init__(self, length: int, channels: int, d_model: int = 64, n_heads: int = 4, enc_layers: int = 1,
                 dec_layers: int = 2, dropout: float = 0.0, n_lags: int = 0, n_calendar: int = 0) -> None:
        super().__init__()
        self.inp = nn.Linear(channels, d_model)
        # covariates (covariates.py), never noised: per step the lag values and their masks of every feature and
        # the calendar features, projected and added to the input embedding (absent without covariates)
        cov_dim = 2 * channels * n_lags + n_calendar
        self.cov = nn.Linear(cov_dim, d_model) if cov_dim else None
        self.pos = nn.Parameter(torch.randn(1, length, d_model) * 0.02)
        self.temb = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.d_model = d_model
        enc = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, enc_layers, enable_nested_tensor=False)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, channels, length, dropout) for _ in range(dec_layers))
        self.out = nn.Linear(d_model, channels)

    def forward(self, x_t: Tensor, t: Tensor, lag_x: Tensor | None = None, lag_mask: Tensor | None = None,
                calendar: Tensor | None = None, **_: object) -> Tensor:
        """``x_t (B, L, C)``, ``t (B,)``; covariates ``lag_x``/``lag_mask (B, L, C, K)``, ``calendar (B, L, 4)`` -> ``x0 (B, L, C)``."""
        e = self.temb(time_embedding(t, self.d_model).to(x_t.dtype))[:, None, :]
        h = self.inp(x_t) + self.pos + e
        if self.cov is not None:
            h = h + self.cov(_covariate_vector(x_t, lag_x, lag_mask, calendar))
        memory = self.encoder(h)
        trend = torch.zeros_like(x_t)
        season = torch.zeros_like(x_t)
        for blk in self.blocks:
            h, tr, se = blk(h + e, memory)
            trend = trend + tr
            season = season + se
        return trend + season + self.out(h)


def _covariate_vector(x_t: Tensor, lag_x: Tensor | None, lag_mask: Tensor | None, calendar: Tensor | None) -> Tensor:
    """Per-step covariates ``(B, L, 2 C K + n_cal)``: lag values and masks of every feature, then the calendar features."""
    b, L, _ = x_t.shape
    parts = []
    if lag_x is not None and lag_mask is not None:
        parts += [lag_x.to(x_t.dtype).reshape(b, L, -1), lag_mask.to(x_t.dtype).reshape(b, L, -1)]
    if calendar is not None:
        parts.append(calendar.to(x_t.dtype))
    if not parts:
        raise ValueError("this network was built with covariates (data.lags / data.calendar) but none were given")
    return torch.cat(parts, dim=-1)


class CSDIBlock(nn.Module):
    """Residual layer: diffusion embedding, temporal transformer (over L), feature transformer (over C), gated output."""

    def __init__(self, ch: int, side_dim: int, n_heads: int) -> None:
        super().__init__()
        self.demb = nn.Linear(ch, ch)
        self.time_layer = nn.TransformerEncoderLayer(ch, n_heads, 2 * ch, 0.0, batch_first=True, norm_first=True)
        self.feat_layer = nn.TransformerEncoderLayer(ch, n_heads, 2 * ch, 0.0, batch_first=True, norm_first=True)
        self.mid = nn.Linear(ch, 2 * ch)
        self.side = nn.Linear(side_dim, 2 * ch)
        self.out = nn.Linear(ch, 2 * ch)

    def forward(self, h: Tensor, demb: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
        b, L, c, ch = h.shape
        y = h + self.demb(demb)[:, None, None, :]
        y = self.time_layer(y.permute(0, 2, 1, 3).reshape(b * c, L, ch)).reshape(b, c, L, ch).permute(0, 2, 1, 3)
        if c > 1:
            y = self.feat_layer(y.reshape(b * L, c, ch)).reshape(b, L, c, ch)
        y = self.mid(y) + self.side(side)
        gate, filt = y.chunk(2, dim=-1)
        y = self.out(torch.sigmoid(gate) * torch.tanh(filt))
        res, skip = y.chunk(2, dim=-1)
        return (h + res) / math.sqrt(2.0), skip


class CSDINet(nn.Module):
    """CSDI-style mask-conditioned network: ``net(x_t, t, cond_x=, cond_mask=) -> x0`` on ``(B, L, C)``.

    Input channels ``[cond_mask * cond_x, (1 - cond_mask) * x_t]``; side information: sinusoidal
    time-of-observation embedding, learned feature embedding and the mask. Known entries of the
    output equal ``cond_x``. Without ``cond_mask`` it is an unconditional model (nothing known).
    """

    def __init__(self, length: int, channels: int, ch: int = 32, layers: int = 2, n_heads: int = 4,
                 time_dim: int = 32, feat_dim: int = 8, n_lags: int = 0, n_calendar: int = 0) -> None:
        super().__init__()
        # covariates (covariates.py) as in TSDiff/CSDI: a feature's lag values and their masks are extra input
        # channels of its own tokens; calendar features join the side information (per step, shared by features)
        self.n_lags, self.n_calendar = n_lags, n_calendar
        self.inp = nn.Linear(2 + 2 * n_lags, ch)
        self.feat = nn.Embedding(channels, feat_dim)
        self.time_dim = time_dim
        side_dim = time_dim + feat_dim + 1 + n_calendar
        self.demb = nn.Sequential(nn.Linear(ch, ch), nn.SiLU(), nn.Linear(ch, ch))
        self.ch = ch
        self.blocks = nn.ModuleList(CSDIBlock(ch, side_dim, n_heads) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(ch, ch), nn.ReLU(), nn.Linear(ch, 1))
        nn.init.zeros_(self.head[-1].weight)
        self.register_buffer("pos", self._pos(length, time_dim))

    @staticmethod
    def _pos(length: int, dim: int) -> Tensor:
        pos = torch.arange(length, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(length, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, x_t: Tensor, t: Tensor, cond_x: Tensor | None = None, cond_mask: Tensor | None = None,
                lag_x: Tensor | None = None, lag_mask: Tensor | None = None, calendar: Tensor | None = None,
                **_: object) -> Tensor:
        """``x_t (B, L, C)``, ``t (B,)``, ``cond_x``/``cond_mask (B, L, C)``; covariates ``lag_x``/``lag_mask
        (B, L, C, K)`` and ``calendar (B, L, 4)`` when the network was built with them -> ``x0 (B, L, C)``."""
        b, L, c = x_t.shape
        m = torch.zeros_like(x_t) if cond_mask is None else cond_mask.to(x_t.dtype)
        cx = torch.zeros_like(x_t) if cond_x is None else cond_x.to(x_t.dtype)
        tokens = [m[..., None] * cx[..., None], (1 - m)[..., None] * x_t[..., None]]
        if self.n_lags:
            if lag_x is None or lag_mask is None:
                raise ValueError("this network was built with data.lags but no lag features were given")
            tokens += [lag_x.to(x_t.dtype), lag_mask.to(x_t.dtype)]
        h = self.inp(torch.cat(tokens, dim=-1))  # (B, L, C, ch)
        side_parts = [
            self.pos[None, :, None, :].expand(b, L, c, self.time_dim).to(x_t.dtype),
            self.feat.weight[None, None].expand(b, L, c, -1).to(x_t.dtype),
            m[..., None],
        ]
        if self.n_calendar:
            if calendar is None:
                raise ValueError("this network was built with data.calendar but no calendar features were given")
            side_parts.append(calendar.to(x_t.dtype)[:, :, None, :].expand(b, L, c, self.n_calendar))
        side = torch.cat(side_parts, dim=-1)
        demb = self.demb(time_embedding(t, self.ch).to(x_t.dtype))
        skip = torch.zeros_like(h)
        for blk in self.blocks:
            h, s = blk(h, demb, side)
            skip = skip + s
        out = self.head(skip / math.sqrt(len(self.blocks))).squeeze(-1)
        return m * cx + (1 - m) * out


def fourier_loss(x0_hat: Tensor, x0: Tensor, weight_mask: Tensor | None = None) -> Tensor:
    """Diffusion-TS's Fourier term per sample ``(B,)``: mean squared error of the real and imaginary rFFT parts over time.

    Missing entries (``weight_mask`` false) are replaced by the target in ``x0_hat`` so they add nothing.
    """
    if weight_mask is not None:
        x0_hat = torch.where(weight_mask, x0_hat, x0)
    f1 = torch.fft.rfft(x0_hat.float(), dim=1, norm="forward")
    f2 = torch.fft.rfft(x0.float(), dim=1, norm="forward")
    d = (f1 - f2)
    return (d.real**2 + d.imag**2).reshape(x0.shape[0], -1).mean(dim=1)


__all__ = ["CSDINet", "DiffusionTSNet", "fourier_loss", "time_embedding"]
