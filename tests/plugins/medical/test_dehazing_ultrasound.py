"""Ultrasound dehazing: the haze operator (adjoint, pseudo-inverse, norm), the joint Gaussian projection against the
core's CG data consistency and the closed-form posterior, joint posterior sampling with exact Gaussian priors, the
DPS component weights, and a tiny us-tissue + us-haze pair through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from polydiff import StateDict
from polydiff.errors import UserInputError
from polydiff.guidance import ConjugateGradientConsistency, check_adjoint
from polydiff.spaces import CompositeSpace, DenseSpace
from polydiff_medical.dehazing import JointDenoiser, JointDPS, JointProjection, dehaze, tweedie_variance
from polydiff_medical.oracles import gaussian_image_model
from polydiff_medical.ultrasound import HazeOperator

SHAPE = (3, 2, 4, 4)


def test_plugin_registers_the_ultrasound_recipes(polydiff_plugins) -> None:
    from polydiff_medical import plugin

    regs = polydiff_plugins(plugin, "medical")
    assert regs.status == "loaded", regs.error
    assert {"medical/us-tissue", "medical/us-haze"} <= set(regs.registered["recipes"])


def _state(gen: torch.Generator) -> StateDict:
    return StateDict({k: torch.randn(SHAPE, generator=gen, dtype=torch.float64) for k in ("tissue", "haze")})


@pytest.mark.parametrize("gains", [(1.0, 1.0), (0.7, -1.3)])
def test_haze_operator_adjoint_pinv_norm(gains: tuple[float, float]) -> None:
    op = HazeOperator(*gains)
    gen = torch.Generator().manual_seed(0)
    s = _state(gen)
    chk = check_adjoint(op, s, space=CompositeSpace({"tissue": DenseSpace(), "haze": DenseSpace()}), generator=gen)
    assert chk.rel_error < 1e-13
    y = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op.forward(op.pinv(y)), y, rtol=1e-13, atol=1e-13)
    # the operator's matrix on one pixel is [a, b]: spectral norm sqrt(a^2 + b^2)
    assert op.norm() == pytest.approx(float(torch.linalg.matrix_norm(torch.tensor([gains], dtype=torch.float64), ord=2)), rel=1e-14)
    with pytest.raises(ValueError, match="components"):
        op.forward({"tissue": y})


def test_joint_projection_equals_core_cg_and_closed_form() -> None:
    """Equal variances: the core's CG data consistency with ``lam = sigma^2 / r^2`` solves the same proximal problem;
    unequal variances: the per-pixel 2x2 Gaussian posterior mean."""
    gen = torch.Generator().manual_seed(1)
    op = HazeOperator(1.0, 0.8)
    x0 = _state(gen)
    y = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    sigma, r2 = 0.3, 0.5
    g = JointProjection(op, y, noise_std=sigma, data_std={"tissue": 1.0, "haze": 1.0}, gamma=1.0)
    ours = g.project(x0, {"tissue": torch.full((3,), r2, dtype=torch.float64), "haze": torch.full((3,), r2, dtype=torch.float64)})
    cg = ConjugateGradientConsistency(op, y, lam=sigma**2 / r2, iters=10)
    ref = cg.project(x0, CompositeSpace({"tissue": DenseSpace(), "haze": DenseSpace()}))
    for k in ("tissue", "haze"):
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-10, atol=1e-10)
    # unequal variances (and gamma): E[(x, h) | y] for x ~ N(x0, rx I), h ~ N(h0, gamma rh I), y = a x + b h + n
    rx, rh, gamma = 0.4, 0.1, 2.5
    g = JointProjection(op, y, noise_std=sigma, data_std={"tissue": 1.0, "haze": 1.0}, gamma=gamma)
    ours = g.project(x0, {"tissue": torch.full((3,), rx, dtype=torch.float64), "haze": torch.full((3,), rh, dtype=torch.float64)})
    cov = np.diag([rx, gamma * rh])
    a = np.array([[op.a, op.b]])
    gain = cov @ a.T @ np.linalg.inv(a @ cov @ a.T + sigma**2)  # (2, 1)
    res = (y - op.forward(x0)).numpy()
    np.testing.assert_allclose(ours["tissue"].numpy(), x0["tissue"].numpy() + gain[0, 0] * res, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours["haze"].numpy(), x0["haze"].numpy() + gain[1, 0] * res, rtol=1e-12, atol=1e-12)


def test_joint_sampling_with_exact_gaussian_priors_recovers_the_posterior() -> None:
    """Priors N(m_x, c_x^2 I), N(m_h, c_h^2 I) with their exact denoisers: the posterior of x given y = x + h + n is
    N(m_x + k (y - m_x - m_h), c_x^2 (1 - k)) with k = c_x^2 / (c_x^2 + c_h^2 + s^2); ancestral joint sampling with the
    projection coupling must reproduce its mean and variance."""
    cx, ch, s = 0.5, 0.3, 0.1
    mx = torch.full((2, 4, 4), 0.2, dtype=torch.float64)
    mh = torch.full((2, 4, 4), -0.1, dtype=torch.float64)
    tissue, haze = gaussian_image_model(mx, cx), gaussian_image_model(mh, ch)
    n = 400
    y = torch.full((n, 2, 4, 4), 0.6, dtype=torch.float64)
    res = dehaze(tissue, haze, y, noise_std=s, data_std={"tissue": cx, "haze": ch}, method="projection", steps=200, eta=1.0,
                 generator=torch.Generator().manual_seed(0))
    k = cx**2 / (cx**2 + ch**2 + s**2)
    mean, var = 0.2 + k * (0.6 - 0.1), cx**2 * (1 - k)
    x = res.tissue
    assert res.nfe == 2 * 200
    assert float(x.mean()) == pytest.approx(mean, abs=4 * math.sqrt(var / x.numel()) + 5e-3)
    assert float(x.var()) == pytest.approx(var, rel=0.1)
    # the residual y - x - h is the posterior of the noise n: N(0, s^2 (1 - s^2 / (c_x^2 + c_h^2 + s^2)))
    r = y - res.tissue - res.haze
    assert float(r.std()) == pytest.approx(s * math.sqrt(1 - s**2 / (cx**2 + ch**2 + s**2)), rel=0.1)


def test_joint_dps_component_weight_zero_leaves_that_prior_unguided() -> None:
    tissue = gaussian_image_model(torch.zeros(2, 4, 4, dtype=torch.float64), 0.5)
    haze = gaussian_image_model(torch.zeros(2, 4, 4, dtype=torch.float64), 0.3)
    joint = JointDenoiser(tissue, haze)
    gen = torch.Generator().manual_seed(2)
    z = _state(gen)
    t = torch.full((3,), 0.4, dtype=torch.float64)
    y = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    plain = joint.denoise(z, t)
    guided = JointDPS(HazeOperator(), y, scale=1.0, weights={"tissue": 1.0, "haze": 0.0}).wrap(joint).denoise(z, t)
    torch.testing.assert_close(guided.parts["haze"].x0, plain.parts["haze"].x0)
    assert not torch.allclose(guided.parts["tissue"].x0, plain.parts["tissue"].x0)
    r2 = tweedie_variance(tissue.process, t, 0.5)
    assert r2.shape == (3,) and bool((r2 > 0).all())


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from polydiff.cli import main as cli_main

    root = tmp_path_factory.mktemp("us")
    sets = ["--set", "train.steps=3", "--set", "data.frames=8", "--set", "data.test_frames=2", "--set", "data.size=16",
            "--set", "train.batch_size=4", "--set", "train.checkpoint_every=3"]
    runs = {}
    for recipe in ("medical/us-tissue", "medical/us-haze"):
        out = root / recipe.split("/")[1]
        assert cli_main(["train", recipe, "--preset", "tiny", "--out", str(out), *sets]) == 0
        runs[recipe] = out
    return root, runs


def test_cli_dehazes_held_out_and_input_frames(tiny_runs, capsys) -> None:
    """In-process CLI: train (fixture), sample --task us-dehaze on held-out frames and on an --input file, evaluate."""
    from polydiff.cli import main as cli_main

    root, runs = tiny_runs
    t, h = str(runs["medical/us-tissue"]), str(runs["medical/us-haze"])
    out = root / "dehazed"
    assert cli_main(["sample", t, "--task", "us-dehaze", "--haze-run", h, "--out", str(out), "--num", "2", "--steps", "3"]) == 0
    meta = json.loads((out / "dehaze.json").read_text())
    assert meta["nfe"] == 6 and {"hazy/gcnr", "projection/gcnr", "wiener/gcnr", "truth/gcnr"} <= set(meta["metrics"])
    assert (out / "figure.png").stat().st_size > 0
    capsys.readouterr()
    assert cli_main(["evaluate", t, "--samples", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["projection/gcnr"] == pytest.approx(meta["metrics"]["projection/gcnr"])
    np.save(root / "hazy.npy", np.load(out / "dehazed.npz")["y"])
    out2 = root / "dehazed_input"
    assert cli_main(["sample", t, "--task", "us-dehaze", "--haze-run", h, "--input", str(root / "hazy.npy"), "--solver", "dps",
                     "--out", str(out2), "--num", "1", "--steps", "2"]) == 0
    z = np.load(out2 / "dehazed.npz")
    assert z["tissue"].shape == (1, 16, 16) and "truth" not in z.files and np.isfinite(z["tissue"]).all()
    capsys.readouterr()
    assert cli_main(["sample", t, "--task", "us-dehaze", "--haze-run", t, "--out", str(root / "x")]) == 2
    assert "medical/us-haze" in capsys.readouterr().err


def test_bad_input_frames_name_the_file(tmp_path: Path) -> None:
    from polydiff_medical.recipes_us import read_input_frames

    np.save(tmp_path / "f.npy", np.zeros((2, 8, 8)))
    with pytest.raises(UserInputError, match=r"f\.npy.*complex IQ frames \(S, 16, 16\)"):
        read_input_frames(str(tmp_path / "f.npy"), 16)
    with pytest.raises(UserInputError, match="not found"):
        read_input_frames(str(tmp_path / "missing.npz"), 16)
