"""Through the CLI, bad audio inputs are one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from polydiff.config import resolve_config, save_config
from polydiff.recipes import RunDir
from polydiff_audio.recipes import SGMSERecipe

training = pytest.importorskip("polydiff.training")


def test_sample_with_a_missing_input_exits_2(tmp_path):
    rec = SGMSERecipe()
    cfg = resolve_config(rec, preset="tiny", overrides=["train.steps=1", "data.synthetic_clips=2", "data.train_items=8",
                                                        "train.log_every=100"])
    run = RunDir(tmp_path / "run")
    training.train(rec, cfg, run, progress=False)
    save_config(cfg, run.config_path, header={"recipe": rec.name})
    r = subprocess.run([sys.executable, "-m", "polydiff.cli", "sample", str(run.path), "--out", str(tmp_path / "o"),
                        "--input", str(tmp_path / "missing.wav"), "--threads", "1"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if "error" in x]
    assert len(lines) == 1 and "missing.wav" in lines[0] and "no such file or folder" in lines[0]
