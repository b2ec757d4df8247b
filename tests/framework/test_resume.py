"""Exact resume: a run SIGKILLed after a checkpoint and resumed ends bitwise equal to an uninterrupted run.

Every run happens in a fresh subprocess (same thread count and environment), so the comparison is
between independent processes, as it is after a real crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import load_model, train
from polydiff.training.checkpoint import load_latest

WORKER = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import train

args = json.loads(sys.argv[1])

class Recipe(ToyRecipe):
    def loss(self, model, batch, cfg, generator=None):
        time.sleep(args.get("sleep", 0.0))  # slows the victim run down so the parent can kill it mid-run
        return super().loss(model, batch, cfg, generator)

cfg = toy_config(train=args["train"], model=args["model"], data=args["data"])
res = train(Recipe(), cfg, RunDir(args["run"]), resume=args["resume"], progress=False)
print(json.dumps({"steps": res.steps, "bad_steps": res.bad_steps}))
'''

TRAIN = {"steps": 30, "batch_size": 16, "lr": 1e-2, "warmup_steps": 5, "checkpoint_every": 5, "keep_checkpoints": 2,
         "log_every": 5, "deterministic": True, "bf16": False, "seed": 3}
# 256 items / 16 per batch = 16 batches per epoch: 30 steps cross an epoch boundary after the kill
DATA = {"n_train": 256, "n_val": 0}
MODEL = {"width": 16, "depth": 2}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _args(run: Path, *, resume: bool, sleep: float = 0.0) -> list[str]:
    args = {"run": str(run), "resume": resume, "sleep": sleep, "train": TRAIN, "model": MODEL, "data": DATA}
    return [sys.executable, "-c", WORKER, json.dumps(args)]


def _run(run: Path, *, resume: bool) -> dict:
    out = subprocess.run(_args(run, resume=resume), env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _latest_step(run: Path) -> int | None:
    try:
        return json.loads((run / "checkpoints" / "latest").read_text())["step"]
    except (OSError, ValueError):
        return None


def _assert_same_files(a: Path, b: Path) -> None:
    for name in ("model.safetensors", "ema.safetensors", "state.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{name}:{k} differs"


def test_sigkill_after_a_checkpoint_then_resume_is_bitwise_identical(tmp_path):
    """The victim runs in a subprocess and is SIGKILLed once checkpoint 10 is complete; it is resumed in another
    subprocess. The reference runs uninterrupted in this process (one thread, like the workers) meanwhile."""
    ref, victim = tmp_path / "ref", tmp_path / "victim"
    proc = subprocess.Popen(_args(victim, resume=False, sleep=0.05), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(ToyRecipe(), toy_config(train=TRAIN, model=MODEL, data=DATA), RunDir(ref), progress=False)
        finally:
            torch.set_num_threads(threads)
        deadline = time.monotonic() + 90
        while (_latest_step(victim) or 0) < 10:  # checkpoint of step 10 is complete
            assert proc.poll() is None, f"victim exited early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "victim never reached step 10"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    killed_at = _latest_step(victim)
    assert killed_at is not None and 10 <= killed_at < TRAIN["steps"]  # it really was interrupted
    assert _run(victim, resume=True)["steps"] == TRAIN["steps"]
    final = f"step-{TRAIN['steps']:08d}"
    _assert_same_files(ref / "checkpoints" / final, victim / "checkpoints" / final)
    # the metrics log reads as one run: each logged step once, in order
    steps = [int(line.split(",")[0]) for line in (victim / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(5, TRAIN["steps"] + 1, 5))


def _cfg(**train):
    return toy_config(train={**TRAIN, "steps": 12, "checkpoint_every": 4, **train}, model=MODEL, data={"n_train": 64, "n_val": 0})


def test_resume_in_process_equals_uninterrupted(tmp_path):
    """max_steps stops early at a checkpoint; resuming to the end matches an uninterrupted run (bitwise, CPU)."""
    recipe = ToyRecipe()
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    train(recipe, _cfg(), a, progress=False)
    assert train(recipe, _cfg(), b, progress=False, max_steps=6).steps == 6  # 64/16 = 4 batches/epoch: mid-epoch stop
    assert train(recipe, _cfg(), b, progress=False, resume=True).steps == 12
    _assert_same_files(a.checkpoints / "step-00000012", b.checkpoints / "step-00000012")
    # resuming a finished run is a no-op
    res = train(recipe, _cfg(), b, progress=False, resume=True)
    assert res.steps == 12 and res.checkpoint == b.checkpoints / "step-00000012"


def test_a_write_killed_mid_checkpoint_leaves_latest_valid(tmp_path):
    """Simulate a kill during the step-8 write: a half-written temp dir with a truncated file beside a valid step 4."""
    recipe = ToyRecipe()
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    train(recipe, _cfg(), a, progress=False)
    train(recipe, _cfg(), b, progress=False, max_steps=4)
    tmp = b.checkpoints / ".tmp-step-00000008"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes((b.checkpoints / "step-00000004" / "model.safetensors").read_bytes()[:100])
    assert load_latest(b.checkpoints).step == 4
    load_model(recipe, _cfg(), b)  # still loadable
    train(recipe, _cfg(), b, progress=False, resume=True)
    assert not tmp.exists()  # cleaned up by the next save
    _assert_same_files(a.checkpoints / "step-00000012", b.checkpoints / "step-00000012")
