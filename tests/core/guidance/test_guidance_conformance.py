"""The core's guidance passes the same conformance classes plugin authors use (``polydiff.testing``)."""

from __future__ import annotations

import torch
from torch import nn

import polydiff
from polydiff.guidance import DPS, ClassifierFree, ClassifierGradient, ConjugateGradientConsistency, MaskOperator, MatrixOperator, Reconstruction, Replacement
from polydiff.processes import MaskedProcess, ProductProcess, gaussian
from polydiff.state import StateDict
from polydiff.testing import GuidanceContract
from polydiff.testing.oracles import GaussianOracleNet

B, D = 3, 4
A = torch.randn(2, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


class LabelNet(nn.Module):
    def __init__(self, process) -> None:
        super().__init__()
        self.oracle = GaussianOracleNet(process, 0.0, 1.0)

    def forward(self, x_t, t, label=None):
        out = self.oracle(x_t, t)
        return out if label is None else out + 0.1 * label[:, None]


class _Dense(GuidanceContract):
    def make_model(self):
        process = gaussian("vp-cosine")
        return polydiff.Denoiser(LabelNet(process), process, prediction="x0")

    def make_like(self):
        return torch.zeros(B, D, dtype=torch.float64)


class TestClassifierFreeContract(_Dense):
    def make_guidance(self):
        return ClassifierFree(2.0, {"label": 0.0})

    def make_cond(self, like):
        return {"label": torch.ones(B, dtype=torch.float64)}


class TestClassifierGradientContract(_Dense):
    def make_guidance(self):
        return ClassifierGradient(lambda x, t, c: -0.5 * (x**2).sum(-1))


class TestReconstructionContract(_Dense):
    def make_guidance(self):
        return Reconstruction(MatrixOperator(A), torch.ones(B, 2, dtype=torch.float64), noise_std=0.5)


class TestDPSContract(_Dense):
    def make_guidance(self):
        return DPS(MaskOperator(torch.tensor([True, False, True, False])), torch.ones(B, D, dtype=torch.float64))


class TestConjugateGradientContract(_Dense):
    def make_guidance(self):
        return ConjugateGradientConsistency(MatrixOperator(A), torch.ones(B, 2, dtype=torch.float64), lam=0.1, iters=3)


class TestReplacementContract(_Dense):
    def make_guidance(self):
        return Replacement(torch.ones(B, D, dtype=torch.float64), torch.tensor([True, True, False, False]))


class TokenLabelNet(nn.Module):
    def forward(self, x_t, t, label):
        logits = torch.zeros(*x_t.shape, 4, dtype=torch.float64)
        return logits + label[:, None, None] * torch.arange(4, dtype=torch.float64)


class _Tokens(GuidanceContract):
    def make_model(self):
        return polydiff.Denoiser(TokenLabelNet(), MaskedProcess(4), prediction="x0_logits")

    def make_like(self):
        return torch.zeros(B, 5, dtype=torch.int64)

    def make_cond(self, like):
        return {"label": torch.ones(B, dtype=torch.float64)}


class TestClassifierFreeOnTokensContract(_Tokens):
    def make_guidance(self):
        return ClassifierFree(3.0, {"label": 0.0})


class TestReplacementOnTokensContract(_Tokens):
    def make_guidance(self):
        return Replacement(torch.tensor([[0, 1, 2, 3, 0]] * B), torch.tensor([True, False, True, False, False]))


class ProductNet(nn.Module):
    def __init__(self, process) -> None:
        super().__init__()
        self.pos = GaussianOracleNet(process.components["pos"], 0.0, 1.0)

    def forward(self, x_t, t, label):
        return {"pos": self.pos(x_t["pos"], t) + 0.1 * label[:, None], "tok": torch.zeros(*x_t["tok"].shape, 4, dtype=torch.float64)}


class TestReplacementOnProductContract(GuidanceContract):
    sampler_name = None

    def make_model(self):
        process = ProductProcess({"pos": gaussian("vp-cosine"), "tok": MaskedProcess(4)})
        return polydiff.Denoiser(ProductNet(process), process, prediction={"pos": "x0", "tok": "x0_logits"})

    def make_like(self):
        return StateDict({"pos": torch.zeros(B, D, dtype=torch.float64), "tok": torch.zeros(B, 5, dtype=torch.int64)})

    def make_cond(self, like):
        return {"label": torch.ones(B, dtype=torch.float64)}

    def make_guidance(self):
        known = StateDict({"pos": torch.ones(B, D, dtype=torch.float64), "tok": torch.full((B, 5), 2)})
        return [ClassifierFree(2.0, {"label": 0.0}), Replacement(known, {"pos": torch.tensor([True, False, False, False]), "tok": torch.tensor([True] * 2 + [False] * 3)})]
