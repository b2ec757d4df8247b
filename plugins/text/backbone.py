"""Transformer backbones for text: bidirectional with adaLN time conditioning (MDLM), time-free (RADD), causal (AR).

All use rotary position embeddings and ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotary_tables(length: int, head_dim: int, device: torch.device, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` tables of shape ``(length, head_dim // 2)`` for rotary embeddings."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs ``(i, i + D/2)`` of ``x`` ``(B, H, L, D)`` by position-dependent angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of ``t`` ``(B,)`` in ``[0, 1]`` (scaled by 1000), shape ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None, :]
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Block(nn.Module):
    """Pre-norm transformer block; with ``cond_dim`` the norms are adaLN-modulated (shift, scale, gate)."""

    def __init__(self, d_model: int, n_heads: int, cond_dim: int | None, causal: bool, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by model.n_heads={n_heads}")
        self.n_heads, self.causal, self.dropout = n_heads, causal, dropout
        affine = cond_dim is None
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=affine)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=affine)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(approximate="tanh"), nn.Linear(4 * d_model, d_model))
        self.ada = None
        if cond_dim is not None:
            self.ada = nn.Linear(cond_dim, 6 * d_model)
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, c: Tensor | None, cos: Tensor, sin: Tensor) -> Tensor:
        """``h`` ``(B, L, D)``; ``c`` ``(B, cond_dim)`` or None."""
        B, L, D = h.shape
        if self.ada is not None and c is not None:
            sh1, sc1, g1, sh2, sc2, g2 = self.ada(c)[:, None, :].chunk(6, dim=-1)
        else:
            sh1 = sc1 = sh2 = sc2 = torch.zeros((), device=h.device, dtype=h.dtype)
            g1 = g2 = torch.zeros((), device=h.device, dtype=h.dtype)
        x = self.norm1(h) * (1 + sc1) + sh1
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0)
        h = h + (1 + g1) * self.proj(a.transpose(1, 2).reshape(B, L, D))
        x = self.norm2(h) * (1 + sc2) + sh2
        return h + (1 + g2) * self.mlp(x)


class TextTransformer(nn.Module):
    """Token transformer returning logits over the clean vocabulary.

    Args:
        vocab_size: number of clean tokens ``V``; inputs take ``V + 1`` values (the extra id is the mask,
            or the begin-of-sequence token of the causal model).
        d_model, n_layers, n_heads: width, depth, attention heads.
        time_conditioning: adaLN on ``t`` (MDLM); ``False`` gives RADD's time-independent network.
        causal: causal attention (the AR baseline).
        dropout: attention dropout.

    ``forward(x_t, t)``: ``x_t`` ``(B, L)`` int64, ``t`` ``(B,)`` (ignored when not time-conditioned)
    -> logits ``(B, L, V)``.
    """

    def __init__(self, vocab_size: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, *,
                 time_conditioning: bool = True, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.time_conditioning = bool(time_conditioning)
        #: read by the core's ``cached`` sampler (``require_time_independent``): RADD's network ignores t
        self.time_independent = not self.time_conditioning
        self.embed = nn.Embedding(self.vocab_size + 1, d_model)
        cond_dim = d_model if self.time_conditioning else None
        self.t_mlp = (nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
                      if self.time_conditioning else None)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, cond_dim, causal, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, self.vocab_size)
        self.head_dim = d_model // n_heads

    def forward(self, x_t: Tensor, t: Tensor | None = None, drop_prompt: Tensor | None = None) -> Tensor:
        """Logits ``(B, L, V)``; ``drop_prompt`` ``(B, L)`` bool hides those tokens (replaced by the mask id ``V``):
        the unconditional branch of prompt classifier-free guidance (SMDM)."""
        if drop_prompt is not None:
            x_t = torch.where(drop_prompt.to(torch.bool), torch.full_like(x_t, self.vocab_size), x_t)
        B, L = x_t.shape
        h = self.embed(x_t)
        c = None
        if self.t_mlp is not None:
            if t is None:
                raise ValueError("a time-conditioned TextTransformer needs t of shape (B,)")
            c = F.silu(self.t_mlp(timestep_embedding(t, h.shape[-1])))
        cos, sin = rotary_tables(L, self.head_dim, x_t.device)
        for blk in self.blocks:
            h = blk(h, c, cos, sin)
        return self.head(self.norm(h))


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["Block", "TextTransformer", "apply_rotary", "count_parameters", "rotary_tables", "timestep_embedding"]
