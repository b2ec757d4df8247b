"""Exact resume when the dataset itself draws random numbers (augmentation, jitter)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from polydiff.recipes import DataBundle, RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import train


class _Jittered(torch.utils.data.Dataset):
    """Points plus fresh Gaussian jitter from the global torch RNG on every access."""

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x = self.base[i]
        return x + 0.01 * torch.randn(x.shape, dtype=x.dtype)


class JitterRecipe(ToyRecipe):
    def datasets(self, cfg, run: RunDir) -> DataBundle:
        bundle = super().datasets(cfg, run)
        return DataBundle(train=_Jittered(bundle.train))


def _cfg():
    return toy_config(
        train={"steps": 12, "batch_size": 16, "lr": 1e-2, "warmup_steps": 2, "checkpoint_every": 4, "log_every": 4,
               "deterministic": True, "bf16": False, "seed": 5},
        model={"width": 16, "depth": 2},
        data={"n_train": 64, "n_val": 0},
    )


def test_resume_is_bitwise_exact_with_a_dataset_that_draws_random_numbers(tmp_path):
    recipe = JitterRecipe()
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    train(recipe, _cfg(), a, progress=False)
    train(recipe, _cfg(), b, progress=False, max_steps=6)  # stops mid-epoch, between regular checkpoints
    train(recipe, _cfg(), b, progress=False, resume=True)
    wa = load_file(str(a.checkpoints / "step-00000012" / "model.safetensors"))
    wb = load_file(str(b.checkpoints / "step-00000012" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
