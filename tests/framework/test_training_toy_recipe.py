"""The toy recipe: exact mixture moments, sample files, evaluation, and that training helps."""

from __future__ import annotations

import math

import torch

from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyDataConfig, ToyRecipe, mixture_moments, mixture_sample, toy_config
from polydiff.training import load_model, train

# For the default mixture (8 modes, radius r=2, std s=0.2): Var x_1 = r^2/2 + s^2 = 2.04, and the fourth
# moment E x_1^4 = r^4 E cos^4 + 6 r^2 s^2 E cos^2 + 3 s^4 = 16*3/8 + 6*4*0.04/2 + 3*0.0016 = 6.4848;
# E x_1^2 x_2^2 = r^4 E cos^2 sin^2 + r^2 s^2 + s^4 = 16/8 + 0.16 + 0.0016 = 2.1616.
VAR = 2.04
MEAN_SQ_ERR = 2 * VAR  # n * E|mean_hat - mean|^2
COV_SQ_ERR = 2 * (6.4848 - VAR**2) + 2 * 2.1616  # n * E||cov_hat - cov||_F^2 (leading order)


def test_mixture_moments_match_draws():
    data = ToyDataConfig()
    mean, cov = mixture_moments(data)
    torch.testing.assert_close(cov, VAR * torch.eye(2, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    n = 20000
    x = mixture_sample(data, n, seed=11, dtype=torch.float64)
    assert float((x.mean(0) - mean).norm()) < 5 * math.sqrt(MEAN_SQ_ERR / n)
    assert float((torch.cov(x.T) - cov).norm()) < 5 * math.sqrt(COV_SQ_ERR / n)


def test_write_read_and_evaluate_true_samples(tmp_path):
    recipe, cfg, run = ToyRecipe(), toy_config(), RunDir(tmp_path / "run")
    n = 2000
    x = mixture_sample(cfg.data, n, seed=5, dtype=torch.float64)
    files = recipe.write_samples(x, tmp_path / "samples", cfg, run)
    assert files == [tmp_path / "samples" / "samples.csv"]
    torch.testing.assert_close(recipe.read_samples(tmp_path / "samples"), x, rtol=1e-7, atol=1e-12)  # 8 significant digits
    m = recipe.evaluate(None, cfg, run, tmp_path / "samples")  # model unused with a samples dir
    assert m["n"] == n
    assert m["mean_error"] < 5 * math.sqrt(MEAN_SQ_ERR / n)
    assert m["cov_error"] < 5 * math.sqrt(COV_SQ_ERR / n)


def test_training_moves_samples_toward_the_data(tmp_path):
    recipe = ToyRecipe()
    cfg = toy_config(train={"steps": 150, "batch_size": 128, "warmup_steps": 10, "checkpoint_every": 150, "bf16": False},
                     data={"n_train": 2048, "n_val": 0})
    run = RunDir(tmp_path / "run")
    torch.manual_seed(cfg.train.seed)
    untrained = recipe.build_model(cfg, run)
    train(recipe, cfg, run, progress=False)
    trained = load_model(recipe, cfg, run)
    kw = {"num": 500, "sampler": "euler", "steps": 16, "seed": 0, "options": {}}
    ref = mixture_sample(cfg.data, 500, seed=123, dtype=torch.float64)
    from polydiff.testing.toy_recipe import sliced_wasserstein

    before = sliced_wasserstein(recipe.sample(untrained, cfg, run, **kw).double(), ref)
    after = sliced_wasserstein(recipe.sample(trained, cfg, run, **kw).double(), ref)
    assert after < before, (before, after)
