"""An NCSN++-style 2D U-Net in plain torch (no custom CUDA ops) for complex spectrograms.

Input: the state ``x_t`` ``(B, 2, F, T)`` and the noisy mixture ``y`` ``(B, 2, F, T)`` (real/imaginary channels),
concatenated to 4 channels; time ``t`` ``(B,)`` through Gaussian Fourier features and an MLP. BigGAN-style
residual blocks (GroupNorm, SiLU, 3x3 convolutions, time embedding added, skip scaled by ``1/sqrt(2)``),
average-pool down- and nearest-neighbour up-sampling followed by a convolution (the native-torch form of NCSN++'s
FIR resampling), optional self-attention at the coarsest level, output ``(B, 2, F, T)``. ``F`` and ``T`` must be
divisible by ``2^(len(ch_mult) - 1)``; :func:`pad_frames` pads ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


class FourierTime(nn.Module):
    """Gaussian Fourier features of ``t`` ``(B,)`` -> ``(B, 2 * half)`` (fixed random frequencies, scale 16)."""

    def __init__(self, half: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("w", torch.randn(half, generator=torch.Generator().manual_seed(0)) * scale)

    def forward(self, t: Tensor) -> Tensor:
        a = 2 * math.pi * t[:, None].float() * self.w[None]
        return torch.cat([a.sin(), a.cos()], dim=-1)


class ResBlock(nn.Module):
    """``(x + conv(act(norm(conv(act(norm(x))) + emb))))/sqrt(2)`` with a 1x1 skip when channels change."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.e(emb)[:, :, None, None]
        h = self.c2(self.drop(F.silu(self.n2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class Attention(nn.Module):
    """Single-head self-attention over the ``F x T`` positions of the coarsest level."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.out(a.transpose(1, 2).reshape(b, c, h, w))) / math.sqrt(2.0)


class NCSNppLite(nn.Module):
    """The U-Net: ``forward(x_t, t, y) -> (B, 2, F, T)``.

    Args:
        ch: base channels; ch_mult: channel multiplier per level (``len - 1`` down-samplings);
        num_res_blocks: residual blocks per level; attention: self-attention at the coarsest level;
        dropout: dropout in the residual blocks.
    """

    def __init__(self, ch: int = 32, ch_mult: Sequence[int] = (1, 2, 2, 2), num_res_blocks: int = 1, attention: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        emb = 4 * ch
        self.levels = len(ch_mult)
        self.time = nn.Sequential(FourierTime(ch), nn.Linear(2 * ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(4, ch, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        chans = [ch]
        c = ch
        for i, m in enumerate(ch_mult):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(c, ch * m, emb, dropout))
                c = ch * m
                chans.append(c)
            self.down.append(blocks)
            if i < self.levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, padding=1))
                chans.append(c)
        self.mid1 = ResBlock(c, c, emb, dropout)
        self.attn = Attention(c) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, m in reversed(list(enumerate(ch_mult))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(c + chans.pop(), ch * m, emb, dropout))
                c = ch * m
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, 2, 3, padding=1)

    @property
    def multiple(self) -> int:
        """``F`` and ``T`` must be multiples of this."""
        return 2 ** (self.levels - 1)

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        if x_t.shape[-1] % self.multiple or x_t.shape[-2] % self.multiple:
            raise ValueError(f"NCSNppLite needs F and T divisible by {self.multiple}, got {tuple(x_t.shape[-2:])}")
        dtype = x_t.dtype
        emb = self.time(t)
        h = self.inp(torch.cat([x_t, y], dim=1).float())
        hs = [h]
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb)
                hs.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](F.avg_pool2d(h, 2))
                hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for j, blocks in enumerate(self.up):
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            if j < self.levels - 1:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h))).to(dtype)


def pad_frames(x: Tensor, multiple: int) -> tuple[Tensor, int]:
    """Zero-pad the last (frame) axis to a multiple of ``multiple``; returns the padded tensor and the original length."""
    T = x.shape[-1]
    pad = (-T) % multiple
    return (F.pad(x, (0, pad)) if pad else x), T


#: the size ladder (presets pick one): channels, multipliers, blocks per level, attention
SIZES: dict[str, dict] = {
    "tiny": {"ch": 8, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "attention": False},
    "small": {"ch": 24, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 1, "attention": True},
    "base": {"ch": 64, "ch_mult": (1, 1, 2, 2, 2, 2), "num_res_blocks": 2, "attention": True},
}

def unet_from_config(model_cfg: object) -> NCSNppLite:
    """The U-Net of a ``model`` config section: preset ``size`` with optional ``ch`` / ``ch_mult`` overrides and ``dropout``."""
    size = dict(SIZES[model_cfg.size])
    if model_cfg.ch:
        size["ch"] = model_cfg.ch
    if model_cfg.ch_mult:
        size["ch_mult"] = tuple(model_cfg.ch_mult)
    return NCSNppLite(**size, dropout=model_cfg.dropout)


__all__ = ["NCSNppLite", "SIZES", "pad_frames", "unet_from_config"]
