"""The training engine on the toy recipe: schedule, EMA, accumulation, the non-finite guard, logs, load_model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.errors import CheckpointError, ConfigError
from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import EMA, NonFiniteLossError, load_model, lr_factor, train
from polydiff.training.checkpoint import load_latest
from polydiff.training.metrics_log import COLUMNS, read_metrics

# tiny and quick: 2-D data, an MLP of width 16, a few steps
FAST = {"steps": 12, "batch_size": 16, "lr": 1e-2, "warmup_steps": 3, "checkpoint_every": 6, "log_every": 4, "bf16": False}
SMALL_DATA = {"n_train": 256, "n_val": 64}
SMALL_MODEL = {"width": 16, "depth": 1}


def cfg(**train):
    return toy_config(train={**FAST, **train}, model=SMALL_MODEL, data=SMALL_DATA)


def test_lr_factor_warmup_then_cosine_to_min_ratio():
    kw = {"total_steps": 100, "warmup_steps": 10, "min_lr_ratio": 0.1}
    # warm-up is linear: step s (0-based) uses (s+1)/10
    assert [lr_factor(s, **kw) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)], rel=1e-15)
    assert lr_factor(10, **kw) == pytest.approx(1.0, rel=1e-15)
    # half-way through the decay the cosine is at its midpoint
    assert lr_factor(55, **kw) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-12)
    assert lr_factor(100, **kw) == pytest.approx(0.1, rel=1e-12)
    assert lr_factor(1000, **kw) == pytest.approx(0.1, rel=1e-12)
    decay = [lr_factor(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_ema_matches_the_exponential_average_formula():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    ema = EMA(model, decay=0.9)
    ref = None
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        cur = [p.detach().clone() for p in model.parameters()]
        # AveragedModel: the first update copies, later ones do ema = d*ema + (1-d)*p
        ref = cur if ref is None else [0.9 * r + 0.1 * c for r, c in zip(ref, cur)]
    for e, r in zip(ema.module.parameters(), ref):
        torch.testing.assert_close(e, r, rtol=1e-14, atol=1e-14)
    assert ema.num_updates == 5


def test_train_writes_checkpoints_metrics_and_loads(tmp_path, capsys):
    recipe, c = ToyRecipe(), cfg(eval_every=6, keep_checkpoints=1)
    run = RunDir(tmp_path / "run")
    res = train(recipe, c, run, progress=False)
    assert capsys.readouterr().err == ""  # progress=False is silent
    assert res.steps == 12 and res.bad_steps == 0 and math.isfinite(res.final_loss)
    assert res.checkpoint == run.checkpoints / "step-00000012"
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest", "step-00000012"]  # keep_checkpoints=1
    rows = read_metrics(run.metrics_log)
    assert run.metrics_log.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [r["step"] for r in rows if "loss" in r] == [4, 8, 12]
    assert [r["step"] for r in rows if "val_loss" in r] == [6, 12]
    # lr logged at step s is the one used by optimizer step s (0-based s-1)
    for r in rows:
        if "lr" in r:
            f = lr_factor(int(r["step"]) - 1, total_steps=12, warmup_steps=3, min_lr_ratio=c.train.min_lr_ratio)
            assert r["lr"] == pytest.approx(1e-2 * f, rel=1e-6)
    ema_model = load_model(recipe, c, run)
    raw_model = load_model(recipe, c, run, ema=False)
    ck = load_latest(run.checkpoints)
    for k, v in ema_model.state_dict().items():
        assert torch.equal(v, ck.ema[k])
    for k, v in raw_model.state_dict().items():
        assert torch.equal(v, ck.model[k])
    assert not ema_model.training
    # the EMA (decay 0.99 over 12 steps) lags the raw weights
    assert any(not torch.equal(ck.ema[k], ck.model[k]) for k in ck.model)


def test_progress_lines_go_to_stderr(tmp_path, capsys):
    train(ToyRecipe(), cfg(steps=8), RunDir(tmp_path / "run"), progress=True)
    err = capsys.readouterr().err
    assert "step 4/8" in err and "step 8/8" in err and "steps/s" in err and "samples/s" in err and "ETA" in err


def test_fresh_start_in_a_used_run_is_refused_and_load_model_needs_a_checkpoint(tmp_path):
    recipe, c = ToyRecipe(), cfg(steps=2, checkpoint_every=2)
    run = RunDir(tmp_path / "run")
    with pytest.raises(CheckpointError, match="latest"):
        load_model(recipe, c, run)
    with pytest.raises(CheckpointError, match="latest"):
        train(recipe, c, run, resume=True, progress=False)
    train(recipe, c, run, progress=False)
    with pytest.raises(ConfigError, match="already has checkpoints"):
        train(recipe, c, run, progress=False)


def test_bad_train_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.grad_accum"):
        train(ToyRecipe(), cfg(grad_accum=0), RunDir(tmp_path / "run"), progress=False)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    """batch 16 x accum 1 and batch 8 x accum 2 see the same samples with the same per-sample noise.

    float64: the only difference is summation order in the loss mean and gradients (~1e-16 relative per
    step); over 12 Adam steps of size <= lr = 1e-2 that stays far below 1e-10.
    """
    kw = {"per_sample_generators": True}
    models = []
    for i, (bs, acc) in enumerate([(16, 1), (8, 2)]):
        c = toy_config(train={**FAST, **kw, "batch_size": bs, "grad_accum": acc}, model={**SMALL_MODEL, "dtype": "float64"},
                       data=SMALL_DATA)
        run = RunDir(tmp_path / f"run{i}")
        train(ToyRecipe(), c, run, progress=False)
        models.append(load_latest(run.checkpoints).model)
    for k in models[0]:
        torch.testing.assert_close(models[0][k], models[1][k], rtol=0, atol=1e-10)


class _NaNRecipe(ToyRecipe):
    """Returns NaN on the given loss calls (0-based); ``always`` makes every call NaN from ``start``."""

    def __init__(self, bad_calls=(), start=None):
        self.bad_calls, self.start, self.calls = set(bad_calls), start, 0

    def loss(self, model, batch, cfg, generator=None):
        loss = super().loss(model, batch, cfg, generator)
        i, self.calls = self.calls, self.calls + 1
        if i in self.bad_calls or (self.start is not None and i >= self.start):
            return loss * float("nan")
        return loss


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    run = RunDir(tmp_path / "run")
    res = train(_NaNRecipe(bad_calls={3, 4, 9}), cfg(steps=12, max_bad_steps=3), run, progress=False)
    assert res.bad_steps == 3 and res.steps == 12 and math.isfinite(res.final_loss)
    ck = load_latest(run.checkpoints)
    # a NaN update would have poisoned the weights and the Adam moments
    assert all(torch.isfinite(v).all() for v in ck.model.values())
    assert all(torch.isfinite(v).all() for v in ck.ema.values())
    assert ck.state["optimizer"]["state"][0]["step"].item() == 12 - 3  # skipped steps make no optimizer update


def test_consecutive_non_finite_steps_stop_with_a_clear_error(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive steps .*train.max_bad_steps=3"):
        train(_NaNRecipe(start=5), cfg(steps=12, max_bad_steps=3), RunDir(tmp_path / "run"), progress=False)


def test_per_sample_generators_make_the_loss_batch_independent(tmp_path):
    """With per-sample generators, sample i's noise depends on (seed, step, index) only: the first step's
    loss of batch 16 equals the mean of its two halves' losses (8 + 8) to float64 rounding."""
    from polydiff.training.data import DataPosition, ShardedBatches
    from polydiff.training.engine import mix_seed

    recipe = ToyRecipe()
    c = toy_config(train={**FAST, "per_sample_generators": True}, model={**SMALL_MODEL, "dtype": "float64"}, data=SMALL_DATA)
    torch.manual_seed(0)
    model = recipe.build_model(c, RunDir(tmp_path))
    ds = recipe.datasets(c, RunDir(tmp_path)).train
    batch, ids, _ = next(ShardedBatches(ds, batch_size=16, seed=0).iterate(DataPosition()))

    def loss(sel):
        gens = [torch.Generator().manual_seed(mix_seed(0, 0, ids[j])) for j in sel]
        return recipe.loss(model, batch[sel], c, gens)

    whole = loss(list(range(16)))
    halves = (loss(list(range(8))) + loss(list(range(8, 16)))) / 2
    torch.testing.assert_close(whole, halves, rtol=1e-13, atol=0)


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    import io

    from polydiff.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress(10, stream=out)
    p.update(step=5, loss=1.0, lr=1e-3, steps_per_s=5.0, samples_per_s=80.0)
    p.message("note")
    p.update(step=10, loss=0.5, lr=1e-3, steps_per_s=5.0, samples_per_s=80.0)
    text = out.getvalue()
    assert text.startswith("\r[############............] step  5/10") and "ETA 1s" in text
    assert "\nnote\n" in text and text.endswith("ETA 0s\x1b[K\n")
    plain = io.StringIO()
    Progress(10, stream=plain).update(step=5, loss=1.0, lr=1e-3, steps_per_s=5.0, samples_per_s=80.0)
    assert plain.getvalue().startswith("step  5/10") and "\r" not in plain.getvalue()
