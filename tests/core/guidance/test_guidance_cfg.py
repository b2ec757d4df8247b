"""Classifier-free guidance: exact formula on analytic Gaussian and discrete models, one batched forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import polydiff
from polydiff.guidance import ClassifierFree
from polydiff.guidance.classifier_free import double_space
from polydiff.processes import MaskedProcess, ProductProcess, gaussian
from polydiff.spaces import CompositeSpace, DenseSpace, MaskedSpace, RaggedSpace
from polydiff.state import StateDict

D = 4


class LabelOracle(nn.Module):
    """Exact ``E[x_0 | x_t]`` for ``x_0 ~ N(mu0 + label * delta, diag(s^2))``; counts calls and batch sizes.

    With ``prediction="eps"`` or ``"v"`` it returns the matching exact prediction instead.
    """

    def __init__(self, process, prediction: str = "x0") -> None:
        super().__init__()
        self.process = process
        self.prediction = prediction
        g = torch.Generator().manual_seed(7)
        self.mu0 = torch.randn(D, generator=g, dtype=torch.float64)
        self.delta = torch.randn(D, generator=g, dtype=torch.float64)
        self.s = 0.5 + torch.rand(D, generator=g, dtype=torch.float64)
        self.batches: list[int] = []

    def forward(self, x_t, t, label):
        self.batches.append(x_t.shape[0])
        v = self.process.schedule(t)
        a, sg = v.alpha[:, None], v.sigma[:, None]
        mu = self.mu0 + label[:, None] * self.delta
        x0 = mu + a * self.s**2 / (a * a * self.s**2 + sg * sg) * (x_t - a * mu)
        eps = (x_t - a * x0) / sg
        return {"x0": x0, "eps": eps, "v": a * eps - sg * x0}[self.prediction]


def _model(prediction: str = "x0"):
    process = gaussian("vp-cosine")
    return polydiff.Denoiser(LabelOracle(process, prediction), process, prediction=prediction)


def _inputs(b: int = 5, t: float = 0.6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, D, generator=g, dtype=torch.float64), torch.full((b,), t, dtype=torch.float64), torch.ones(b, dtype=torch.float64)


def test_scale_one_is_the_conditional_model_with_one_plain_forward():
    model = _model()
    x, t, lab = _inputs()
    ref = model.denoise(x, t, {"label": lab})
    model.net.batches.clear()
    out = ClassifierFree(1.0, {"label": 0.0}).wrap(model).denoise(x, t, {"label": lab})
    assert torch.equal(out.x0, ref.x0) and torch.equal(out.eps, ref.eps)
    assert model.net.batches == [5]


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
@pytest.mark.parametrize("w", [0.0, 2.5])
def test_guided_estimate_is_uncond_plus_w_times_difference(prediction, w):
    model = _model(prediction)
    x, t, lab = _inputs()
    c = model.denoise(x, t, {"label": lab})
    u = model.denoise(x, t, {"label": torch.zeros_like(lab)})
    model.net.batches.clear()
    out = ClassifierFree(w, drop_key="label").wrap(model).denoise(x, t, {"label": lab})
    assert model.net.batches == [10]  # one batched forward on 2B samples
    # float64 rounding of the batched vs the separate forward only
    torch.testing.assert_close(out.x0, u.x0 + w * (c.x0 - u.x0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.eps, u.eps + w * (c.eps - u.eps), rtol=1e-12, atol=1e-12)
    # the guided pair stays consistent with z_t
    v = model.process.schedule(t)
    torch.testing.assert_close(v.alpha[:, None] * out.x0 + v.sigma[:, None] * out.eps, x, rtol=1e-12, atol=1e-12)


def test_one_network_call_per_step_in_sampling():
    model = _model()
    lab = torch.ones(3, dtype=torch.float64)
    res = polydiff.sample(model, shape=(3, D), dtype=torch.float64, sampler="euler", steps=7, cond={"label": lab}, guidance=[ClassifierFree(3.0, {"label": 0.0})])
    assert res.nfe == 7 and model.net.batches == [6] * 7


def test_interval_switches_guidance_per_sample():
    model = _model()
    x, _, lab = _inputs(4)
    t = torch.tensor([0.1, 0.5, 0.7, 0.95], dtype=torch.float64)
    cfg = ClassifierFree(4.0, {"label": 0.0}, interval=(0.3, 0.8))
    out = cfg.wrap(model).denoise(x, t, {"label": lab})
    c = model.denoise(x, t, {"label": lab})
    u = model.denoise(x, t, {"label": torch.zeros_like(lab)})
    inside = torch.tensor([False, True, True, False])
    torch.testing.assert_close(out.x0[~inside], c.x0[~inside], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.x0[inside], (u.x0 + 4.0 * (c.x0 - u.x0))[inside], rtol=1e-12, atol=1e-12)
    model.net.batches.clear()
    cfg.wrap(model).denoise(x, torch.full((4,), 0.9, dtype=torch.float64), {"label": lab})
    assert model.net.batches == [4]  # nobody inside: conditional forward only


def test_null_condition_forms_and_conventions():
    model = _model()
    x, t, lab = _inputs()
    a = ClassifierFree(2.0, {"label": 0.0}).wrap(model).denoise(x, t, {"label": lab})
    b = ClassifierFree(2.0, drop_key="label", null=torch.zeros_like).wrap(model).denoise(x, t, {"label": lab})
    c = ClassifierFree.from_original_weight(1.0, {"label": lambda v: v * 0}).wrap(model).denoise(x, t, {"label": lab})
    d = ClassifierFree(2.0, {"label": 0.0}, batched=False).wrap(model).denoise(x, t, {"label": lab})
    for o in (b, c, d):
        torch.testing.assert_close(o.x0, a.x0, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="no key"):
        ClassifierFree(2.0, {"other": 0.0}).wrap(model).denoise(x, t, {"label": lab})
    with pytest.raises(ValueError, match="interval"):
        ClassifierFree(2.0, {"label": 0.0}, interval=(0.8, 0.2))
    with pytest.raises(ValueError, match="null condition"):
        ClassifierFree(2.0)


class TokenNet(nn.Module):
    """Logits ``base + label * bias`` over ``V`` classes for every position."""

    def __init__(self, V: int = 5, L: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.base = torch.randn(L, V, generator=g, dtype=torch.float64)
        self.bias = torch.randn(L, V, generator=g, dtype=torch.float64)

    def forward(self, x_t, t, label):
        return self.base + label[:, None, None] * self.bias


def test_discrete_cfg_combines_log_probs_and_renormalises():
    process = MaskedProcess(5)
    model = polydiff.Denoiser(TokenNet(), process, prediction="x0_logits")
    x = torch.tensor([[5, 1, 5, 5, 2, 5], [0, 5, 5, 3, 5, 5]])  # 5 = mask
    t = torch.full((2,), 0.5, dtype=torch.float64)
    lab = torch.ones(2, dtype=torch.float64)
    c = model.denoise(x, t, {"label": lab}).log_probs
    u = model.denoise(x, t, {"label": torch.zeros_like(lab)}).log_probs
    out = ClassifierFree(3.0, {"label": 0.0}).wrap(model).denoise(x, t, {"label": lab}).log_probs
    masked = x == 5
    expect = torch.log_softmax(u + 3.0 * (c - u), dim=-1)
    torch.testing.assert_close(out[masked], expect[masked], rtol=1e-12, atol=1e-12)
    assert torch.equal(out[~masked], c[~masked])  # carried-over tokens stay one-hot (no NaN from -inf - -inf)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 6, dtype=torch.float64), rtol=0, atol=1e-12)


class ProductNet(nn.Module):
    def __init__(self, process) -> None:
        super().__init__()
        self.pos = LabelOracle(process.components["pos"])
        self.tok = TokenNet()

    def forward(self, x_t, t, label):
        return {"pos": self.pos(x_t["pos"], t, label), "tok": self.tok(x_t["tok"], t, label)}


def test_cfg_on_a_product_state():
    process = ProductProcess({"pos": gaussian("vp-cosine"), "tok": MaskedProcess(5)})
    model = polydiff.Denoiser(ProductNet(process), process, prediction={"pos": "x0", "tok": "x0_logits"})
    xg, t, lab = _inputs(2)
    x = StateDict({"pos": xg, "tok": torch.tensor([[5, 1, 5, 5, 2, 5], [0, 5, 5, 3, 5, 5]])})
    space = CompositeSpace({"pos": DenseSpace(), "tok": DenseSpace()})
    c = model.denoise(x, t, {"label": lab}, space=space)
    u = model.denoise(x, t, {"label": torch.zeros_like(lab)}, space=space)
    out = ClassifierFree(2.0, {"label": 0.0}).wrap(model).denoise(x, t, {"label": lab}, space=space)
    torch.testing.assert_close(out["pos"].x0, u["pos"].x0 + 2.0 * (c["pos"].x0 - u["pos"].x0), rtol=1e-12, atol=1e-12)
    m = x["tok"] == 5
    lc, lu = c["tok"].log_probs, u["tok"].log_probs
    torch.testing.assert_close(out["tok"].log_probs[m], torch.log_softmax(lu + 2.0 * (lc - lu), -1)[m], rtol=1e-12, atol=1e-12)


def test_cfg_on_a_composite_gaussian_state():
    process = gaussian("vp-cosine")
    oracle = LabelOracle(process)

    class Net(nn.Module):
        def forward(self, x_t, t, label):
            return StateDict({"a": oracle(x_t["a"], t, label), "b": oracle(x_t["b"], t, 2 * label)})

    model = polydiff.Denoiser(Net(), process, prediction="x0")
    xa, t, lab = _inputs(3)
    x = StateDict({"a": xa, "b": -xa})
    c = model.denoise(x, t, {"label": lab})
    u = model.denoise(x, t, {"label": torch.zeros_like(lab)})
    out = ClassifierFree(1.5, {"label": 0.0}).wrap(model).denoise(x, t, {"label": lab})
    for k in "ab":
        torch.testing.assert_close(out.x0[k], u.x0[k] + 1.5 * (c.x0[k] - u.x0[k]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out.eps[k], u.eps[k] + 1.5 * (c.eps[k] - u.eps[k]), rtol=1e-12, atol=1e-12)


def test_double_space():
    rag = double_space(RaggedSpace(torch.tensor([0, 0, 1, 1, 1]), 2))
    assert rag.num_segments == 4 and rag.segment_ids.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    msk = double_space(MaskedSpace(torch.tensor([[True, False]])))
    assert msk.mask.tolist() == [[True, False], [True, False]]
    comp = double_space(CompositeSpace({"a": DenseSpace(), "r": RaggedSpace(torch.tensor([0, 1]), 2)}))
    assert comp["r"].num_segments == 4
