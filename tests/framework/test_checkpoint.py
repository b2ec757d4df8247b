"""Checkpoint files: pickle-free round trips, atomic layout, pruning, and verification of corrupt files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from polydiff.errors import CheckpointError
from polydiff.training.checkpoint import flatten, latest_checkpoint, latest_step, load_checkpoint, load_latest, save_checkpoint, unflatten


def _optimizer_state() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    return opt.state_dict()


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_flatten_round_trips_optimizer_and_rng_states():
    state = {
        "optimizer": _optimizer_state(),  # int keys, tuples (betas), tensors, None
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "gen": torch.Generator().manual_seed(3).get_state(),
        "nested": {"a": [1, 2.5, None, True, "s"], 7: (1, 2)},
    }
    js, tensors = flatten(state)
    back = unflatten(json.loads(json.dumps(js)), tensors)
    assert _equal(state, back)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())


def test_flatten_refuses_objects_it_cannot_store_without_pickle():
    with pytest.raises(TypeError, match=r"object of type object at '/x'"):
        flatten({"x": object()})


def _save(directory, step, keep=2):
    model = {"w": torch.full((3,), float(step)), "b": torch.arange(2)}
    return save_checkpoint(directory, step, model=model, ema={"w": torch.zeros(3), "b": torch.arange(2)},
                           state={"step": step, "opt": {0: {"m": torch.ones(2)}}}, keep=keep)


def test_save_load_prune_and_latest(tmp_path):
    d = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        path = _save(d, step)
    assert path == d / "step-00000003"
    assert json.loads((d / "latest").read_text()) == {"step": 3, "dir": "step-00000003"}
    assert sorted(p.name for p in d.iterdir()) == ["latest", "step-00000002", "step-00000003"]
    ck = load_latest(d)
    assert ck.step == 3 and torch.equal(ck.model["w"], torch.full((3,), 3.0)) and torch.equal(ck.model["b"], torch.arange(2))
    assert torch.equal(ck.state["opt"][0]["m"], torch.ones(2))
    assert latest_checkpoint(d) == d / "step-00000003" and latest_step(d) == 3
    assert latest_step(tmp_path / "never-started") == 0
    assert not list(d.glob(".tmp-*"))


def test_shared_tensors_are_saved(tmp_path):
    w = torch.randn(4)
    save_checkpoint(tmp_path, 1, model={"a": w, "b": w}, ema=None, state={}, keep=1)
    ck = load_latest(tmp_path)
    assert torch.equal(ck.model["a"], w) and torch.equal(ck.model["b"], w) and ck.ema is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
@pytest.mark.parametrize("name", ["model.safetensors", "ema.safetensors", "state.safetensors", "state.json"])
def test_a_damaged_file_raises_checkpoint_error_naming_it(tmp_path, name, damage):
    path = _save(tmp_path, 5)
    f = path / name
    data = f.read_bytes()
    if damage == "flip":
        f.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    elif damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:
        f.unlink()
    with pytest.raises(CheckpointError, match=rf"checkpoint {f} is corrupt"):
        load_checkpoint(path)


def test_missing_manifest_and_corrupt_latest_are_named(tmp_path):
    path = _save(tmp_path, 5)
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=str(path / "manifest.json")):
        load_latest(tmp_path)
    (tmp_path / "latest").write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'latest'} is corrupt"):
        load_latest(tmp_path)
