"""DDP: ``torchrun --nproc_per_node 2`` (gloo, CPU) equals one process with the same global batch.

Why the two runs are the same computation: the data order interleaves one permutation across ranks
(rank r takes every 2nd index), so the union of the ranks' batches of 8 at step k is the single
process's batch of 16; with ``per_sample_generators`` each sample's time and noise come from a
generator seeded by (seed, step, dataset index), so sharding does not change a single draw; DDP
averages the ranks' mean-loss gradients, which equals the gradient of the mean over 16.
What differs is float summation order only. Tolerance: in float64 one step's gradient differs by
~1e-16 relative; 10 AdamW steps of size <= lr = 1e-2 each keep the weights within 1e-10 unless the
Adam normaliser is near eps, which the clipped O(1e-1) gradients here are far from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import train
from polydiff.training.checkpoint import load_latest

WORKER = r'''
import json, sys
import torch
torch.set_num_threads(1)
from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import train

args = json.loads(sys.argv[1])
cfg = toy_config(train=args["train"], model=args["model"], data=args["data"])
res = train(ToyRecipe(), cfg, RunDir(args["run"]), resume=args.get("resume", False), progress=False)
'''

TRAIN = {"steps": 10, "lr": 1e-2, "warmup_steps": 2, "checkpoint_every": 5, "log_every": 5, "bf16": False,
         "per_sample_generators": True, "seed": 1}
MODEL = {"width": 16, "depth": 2, "dtype": "float64"}
DATA = {"n_train": 96, "n_val": 0}  # 96 / 16 = 6 batches per epoch: 10 steps cross an epoch boundary


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp_run, single_run = tmp_path / "ddp", tmp_path / "single"
    args = {"run": str(ddp_run), "train": {**TRAIN, "batch_size": 8}, "model": MODEL, "data": DATA}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), json.dumps(args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c = toy_config(train={**TRAIN, "batch_size": 16}, model=MODEL, data=DATA)
    train(ToyRecipe(), c, RunDir(single_run), progress=False)  # meanwhile, in this process
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err)[-4000:]

    ddp, single = load_latest(ddp_run / "checkpoints"), load_latest(single_run / "checkpoints")
    assert ddp.step == single.step == 10
    assert ddp.state["world_size"] == 2 and len(ddp.state["rng"]["loss_generator"]) == 2
    assert (ddp.state["epoch"], ddp.state["batch"]) == (single.state["epoch"], single.state["batch"]) == (1, 4)
    moved = 0.0
    for k in single.model:
        torch.testing.assert_close(ddp.model[k], single.model[k], rtol=0, atol=1e-10)
        torch.testing.assert_close(ddp.ema[k], single.ema[k], rtol=0, atol=1e-10)
        moved = max(moved, float((single.model[k] - single.ema[k]).abs().max()))
    assert moved > 1e-6  # the weights did change, so the comparison means something
    # only rank 0 wrote: one metrics log with each step once
    steps = [int(line.split(",")[0]) for line in (ddp_run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [5, 10]
