"""A DiffWave-style waveform network in plain torch: ``forward(x_t (B, 1, N), t (B,), mel (B, n_mels, frames))``.

Input 1x1 convolution to ``C`` channels, then ``L`` residual layers with dilation ``2^(i mod cycle)``: each adds a
projection of the sinusoidal embedding of ``t`` to its input, applies a dilated 3-tap convolution to ``2C``
channels, adds a 1x1 projection of the upsampled mel conditioning, gates ``tanh(a) * sigmoid(b)`` and projects to a
residual (scaled by ``1/sqrt(2)``) and a skip output; the skips are summed (scaled by ``1/sqrt(L)``) and mapped to the
output ``(B, 1, N)``. The mel is upsampled from frames to samples by two transposed 2-D convolutions whose strides
multiply to the hop (16 x 16 for hop 256), as in DiffWave, and cut to ``N`` samples (``center=True`` frames).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"channels": 16, "layers": 6, "cycle": 3},
    "small": {"channels": 32, "layers": 12, "cycle": 6},
    "base": {"channels": 64, "layers": 30, "cycle": 10},  # DiffWave base (C = 64, L = 30, dilation cycle 10)
}


def _factor(hop: int) -> tuple[int, int]:
    a = 2 ** int(round(math.log2(math.sqrt(hop))))
    while hop % a:
        a //= 2
    return a, hop // a


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``1000 t`` -> two SiLU linear layers -> ``(B, dim)``."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.half = 32
        self.l1, self.l2 = nn.Linear(2 * self.half, dim), nn.Linear(dim, dim)

    def forward(self, t: Tensor) -> Tensor:
        freqs = torch.exp(-math.log(10000.0) * torch.arange(self.half, device=t.device, dtype=torch.float32) / self.half)
        a = 1000.0 * t.float()[:, None] * freqs[None]
        return F.silu(self.l2(F.silu(self.l1(torch.cat([a.sin(), a.cos()], dim=-1)))))


class MelUpsampler(nn.Module):
    """Frames -> samples: two ``ConvTranspose2d`` over (mel, time) with time strides ``s1 * s2 = hop``."""

    def __init__(self, hop: int) -> None:
        super().__init__()
        s1, s2 = _factor(hop)
        self.c1 = nn.ConvTranspose2d(1, 1, (3, 2 * s1), stride=(1, s1), padding=(1, s1 // 2))
        self.c2 = nn.ConvTranspose2d(1, 1, (3, 2 * s2), stride=(1, s2), padding=(1, s2 // 2))

    def forward(self, mel: Tensor) -> Tensor:
        h = F.leaky_relu(self.c1(mel[:, None]), 0.4)
        return F.leaky_relu(self.c2(h), 0.4)[:, 0]


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, n_mels: int, dilation: int, emb: int) -> None:
        super().__init__()
        self.dil = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.t = nn.Linear(emb, channels)
        self.cond = nn.Conv1d(n_mels, 2 * channels, 1)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dil(x + self.t(temb)[:, :, None]) + self.cond(cond)
        a, b = h.chunk(2, dim=1)
        res, skip = self.out(torch.tanh(a) * torch.sigmoid(b)).chunk(2, dim=1)
        return (x + res) / math.sqrt(2.0), skip


class DiffWaveNet(nn.Module):
    """The DiffWave network (see the module docstring); ``mel`` is the normalised log-mel in ``[0, 1]``."""

    def __init__(self, channels: int = 64, layers: int = 30, cycle: int = 10, n_mels: int = 80, hop: int = 256, emb: int = 128) -> None:
        super().__init__()
        self.hop = hop
        self.inp = nn.Conv1d(1, channels, 1)
        self.temb = TimeEmbedding(emb)
        self.up = MelUpsampler(hop)
        self.layers = nn.ModuleList(ResidualLayer(channels, n_mels, 2 ** (i % cycle), emb) for i in range(layers))
        self.skip = nn.Conv1d(channels, channels, 1)
        self.final = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def forward(self, x_t: Tensor, t: Tensor, mel: Tensor) -> Tensor:
        n = x_t.shape[-1]
        cond = self.up(mel.to(x_t.dtype))
        if cond.shape[-1] < n:
            cond = F.pad(cond, (0, n - cond.shape[-1]), mode="replicate")
        cond = cond[..., :n]
        h = F.relu(self.inp(x_t))
        temb = self.temb(t)
        total = torch.zeros_like(h)
        for layer in self.layers:
            h, s = layer(h, temb, cond)
            total = total + s
        h = F.relu(self.skip(total / math.sqrt(len(self.layers))))
        return self.final(h)


__all__ = ["SIZES", "DiffWaveNet"]
