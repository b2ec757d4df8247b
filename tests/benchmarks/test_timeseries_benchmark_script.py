"""The time-series benchmark resumes an interrupted training run rather than scoring a half-trained model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("timeseries/run.py")


def _cfg(steps: int):
    from polydiff_timeseries.config import resolve

    return resolve("tiny", **{"train.steps": steps, "train.checkpoint_every": 10, "data.max_rows": 300,
                              "train.log_every": 10**9})


def _step(run: Path) -> int:
    return int(json.loads((run / "checkpoints" / "latest").read_text())["step"])


def test_train_recipe_resumes_then_reuses(bench, tmp_path):
    rec = bench.DiffusionTSRecipe()
    run = tmp_path / "dts"
    # an "interrupted" run: 20 of 40 steps checkpointed
    _, secs = bench.train_recipe(rec, _cfg(20), run, "cpu")
    assert _step(run) == 20 and secs > 0
    model, secs = bench.train_recipe(rec, _cfg(40), run, "cpu")
    assert _step(run) == 40 and secs > 0  # trained on to the configured steps
    # a finished run is loaded, not trained again, and gives the same weights
    again, secs = bench.train_recipe(rec, _cfg(40), run, "cpu")
    assert math.isnan(secs) and _step(run) == 40
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
