"""A small 2-D U-Net in plain torch for slice priors (time embedding, GroupNorm residual blocks, optional mid attention).

Size ladder (``model.channels``): tiny ``(16, 32)``, small ``(32, 64, 128)``, base ``(64, 128, 256)``; the image side
must be divisible by ``2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of times in [0, 1] ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    arg = 1000.0 * t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1 = nn.GroupNorm(_groups(cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(_groups(cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class Attention(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.n = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.n(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        return x + self.out((v @ a.transpose(1, 2)).reshape(b, c, h, w))


class UNet2D(nn.Module):
    """``net(x_t (B, C, H, W), t (B,)) -> (B, C, H, W)``.

    Args:
        in_channels: image channels. channels: widths per resolution. blocks: residual blocks per level.
        attention: self-attention at the coarsest level.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64), blocks: int = 1, attention: bool = False) -> None:
        super().__init__()
        self.tdim = 4 * channels[0]
        self.temb = nn.Sequential(nn.Linear(channels[0], self.tdim), nn.SiLU(), nn.Linear(self.tdim, self.tdim))
        self.inp = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = channels[0]
        skips = []
        for i, ch in enumerate(channels):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(c, ch, self.tdim))
                c = ch
            self.down.append(level)
            skips.append(c)
            self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(channels) - 1 else nn.Identity())
        self.mid1 = ResBlock(c, c, self.tdim)
        self.attn = Attention(c) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, self.tdim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(channels))):
            level = nn.ModuleList()
            for j in range(blocks):
                level.append(ResBlock(c + (skips[i] if j == 0 else 0), ch, self.tdim))
                c = ch
            self.up.append(level)
            self.upsample.append(nn.Upsample(scale_factor=2, mode="nearest") if i > 0 else nn.Identity())
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        self.levels = len(channels)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        side = 2 ** (self.levels - 1)
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"UNet2D: image side {tuple(x.shape[-2:])} must be divisible by {side}")
        dtype = x.dtype
        h = self.inp(x.to(self.inp.weight.dtype))
        temb = self.temb(time_embedding(t.reshape(-1).expand(x.shape[0]), self.inp.out_channels).to(h.dtype))
        skips = []
        for level, pool in zip(self.down, self.pool, strict=True):
            for blk in level:
                h = blk(h, temb)
            skips.append(h)
            h = pool(h)
        h = self.mid2(self.attn(self.mid1(h, temb)), temb)
        for level, up in zip(self.up, self.upsample, strict=True):
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in level:
                h = blk(h, temb)
            h = up(h)
        return self.out(h).to(dtype)


__all__ = ["UNet2D", "time_embedding"]
