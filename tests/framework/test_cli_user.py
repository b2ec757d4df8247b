"""The CLI as a user meets it: every user-facing error is one line and exit code 2, warnings are one
line each, long work shows progress, a run directory is locked while it trains, and runs can be
inspected (``recipes``, ``show``, ``sample RUN --help``). Table-driven over the error cases."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff.cli import main
from polydiff.errors import DataError
from polydiff.plugins import isolated_plugins
from polydiff.progress import WorkProgress, reporting, sampling_callback, track

from framework_fakes import FakePlugin, FakeRecipe

TRAIN = ("train", "fake/points", "--preset", "tiny", "--device", "cpu", "--no-progress")


@pytest.fixture
def run_dir(cli, tmp_path):
    """A finished 3-step run of fake/points."""
    run = tmp_path / "run"
    code, _, err = cli(*TRAIN, "--out", run)
    assert code == 0, err
    return run


def _one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.startswith("polydiff: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(run: Path, pid: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))


# -- every user error: one line, exit code 2 ----------------------------------------------------------
def _no_cuda(monkeypatch, tmp_path, run):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return (*TRAIN[:-3], "--device", "cuda", "--out", tmp_path / "r")


def _empty_samples(monkeypatch, tmp_path, run):
    (tmp_path / "empty").mkdir()
    return ("evaluate", run, "--samples", tmp_path / "empty", "--device", "cpu")


def _samples_of_another_kind(monkeypatch, tmp_path, run):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.wav").write_bytes(b"RIFF")

    def evaluate(self, model, cfg, run, samples_dir):  # what a recipe does when it reads none of the files
        raise DataError(f"--samples {samples_dir}: no points.csv (this recipe reads points.csv)")

    monkeypatch.setattr(FakeRecipe, "evaluate", evaluate)
    return ("evaluate", run, "--samples", tmp_path / "other", "--device", "cpu", "--no-progress")


def _sample_over_files(monkeypatch, tmp_path, run):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.csv").write_text("keep me\n")
    return ("sample", run, "--out", tmp_path / "s", "--device", "cpu")


def _locked(monkeypatch, tmp_path, run):
    _write_lock(run, os.getppid())  # a live process on this host
    return (*TRAIN, "--out", run, "--resume", "--max-steps", "5")


def _locked_fresh(monkeypatch, tmp_path, run):
    _write_lock(tmp_path / "new", os.getppid())
    return (*TRAIN, "--out", tmp_path / "new")


ERRORS = [
    # (id, args or a function (monkeypatch, tmp_path, run) -> args, words the line must contain)
    ("device-tpu", (*TRAIN[:-3], "--device", "tpu", "--out", "{tmp}/r"), ["--device 'tpu'", "cpu, cuda"]),
    ("device-cuda-without-cuda", _no_cuda, ["--device cuda", "CUDA is not available"]),
    ("sample-device-tpu", ("sample", "{run}", "--out", "{tmp}/s", "--device", "tpu"), ["--device 'tpu'"]),
    ("threads-zero", ("sample", "{run}", "--out", "{tmp}/s", "--device", "cpu", "--threads", "0"),
     ["--threads must be at least 1"]),
    ("resume-finished", (*TRAIN, "--out", "{run}", "--resume"), ["already finished at step 3", "--max-steps N"]),
    ("resume-finished-max-steps", (*TRAIN, "--out", "{run}", "--resume", "--max-steps", "2"),
     ["already finished at step 3"]),
    ("evaluate-samples-missing", ("evaluate", "{run}", "--samples", "{tmp}/nope", "--device", "cpu"),
     ["--samples", "is not a directory"]),
    ("evaluate-samples-empty", _empty_samples, ["--samples", "holds no files"]),
    ("evaluate-samples-unreadable", _samples_of_another_kind, ["no points.csv"]),
    ("sample-out-not-empty", _sample_over_files, ["already holds 1 file(s)", "mine.csv", "--overwrite"]),
    ("train-locked", _locked, ["is in use: process", str(os.getppid()), ".lock"]),
    ("train-fresh-locked", _locked_fresh, ["is in use: process", str(os.getppid())]),
    ("evaluate-set-model", ("evaluate", "{run}", "--set", "model.width=3", "--device", "cpu"),
     ["model.* settings cannot be changed"]),
]


@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_user_errors_are_one_line(cli, run_dir, tmp_path, monkeypatch, case):
    _, args, needles = case
    if callable(args):
        args = args(monkeypatch, tmp_path, run_dir)
    else:
        args = tuple(str(a).format(tmp=tmp_path, run=run_dir) for a in args)
    code, _, err = cli(*args)
    _one_line_error(code, err, *needles)


def test_a_refused_sample_out_keeps_the_users_file(cli, run_dir, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.csv").write_text("keep me\n")
    assert cli("sample", run_dir, "--out", tmp_path / "s", "--device", "cpu")[0] == 2
    assert (tmp_path / "s" / "mine.csv").read_text() == "keep me\n"
    # --overwrite writes there; the user's own file stays
    code, out, err = cli("sample", run_dir, "--out", tmp_path / "s", "--device", "cpu", "--overwrite", "--num", "3")
    assert code == 0, err
    assert (tmp_path / "s" / "mine.csv").read_text() == "keep me\n"
    assert len((tmp_path / "s" / "points.csv").read_text().splitlines()) == 3


def test_overwrite_replaces_an_earlier_sample(cli, run_dir, tmp_path, monkeypatch):
    out = tmp_path / "s"
    assert cli("sample", run_dir, "--out", out, "--device", "cpu", "--num", "4")[0] == 0
    assert json.loads((out / ".polydiff-samples.json").read_text()) == {"files": ["points.csv"]}
    assert cli("sample", run_dir, "--out", out, "--device", "cpu", "--num", "4")[0] == 2  # refused
    assert cli("sample", run_dir, "--out", out, "--device", "cpu", "--num", "2", "--overwrite")[0] == 0
    assert len((out / "points.csv").read_text().splitlines()) == 2


# -- the lock -----------------------------------------------------------------------------------------
def test_a_stale_lock_does_not_block_a_resume(cli, run_dir):
    _write_lock(run_dir, _dead_pid())
    code, out, err = cli(*TRAIN, "--out", run_dir, "--resume", "--max-steps", "5")
    assert code == 0, err
    assert "trained 2 steps (steps 3->5; 5 in total)" in out
    assert not (run_dir / ".lock").exists()  # released at the end


def test_the_lock_is_held_while_training(cli, tmp_path, monkeypatch):
    seen = {}

    def setup(self, cfg, run):
        seen["lock"] = json.loads((Path(run.path) / ".lock").read_text())

    monkeypatch.setattr(FakeRecipe, "setup", setup)
    assert cli(*TRAIN, "--out", tmp_path / "r")[0] == 0
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname()
    assert not (tmp_path / "r" / ".lock").exists()


@pytest.mark.slow
def test_a_second_process_is_refused(tmp_path):
    """Two real processes: the second 'polydiff train' into the same run names the first one's PID."""
    _write_lock(tmp_path / "r", os.getpid())  # this test process plays the first trainer
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from framework_fakes import FakePlugin\n"
            "from polydiff.plugins import isolated_plugins\n"
            "from polydiff.cli import main\n"
            "with isolated_plugins(('fake', FakePlugin())):\n"
            "    raise SystemExit(main(['train', 'fake/points', '--out', %r, '--device', 'cpu', '--no-progress']))\n"
            % (str(Path(__file__).parent), str(tmp_path / "r")))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and f"process {os.getpid()} on {socket.gethostname()}" in p.stderr


# -- resumed runs report this call's steps and the total ----------------------------------------------
def test_resume_reports_steps_of_this_call_and_the_total(cli, run_dir):
    code, out, err = cli(*TRAIN, "--out", run_dir, "--resume", "--max-steps", "7")
    assert code == 0, err
    assert "trained 4 steps (steps 3->7; 7 in total)" in out


# -- warnings and --debug ------------------------------------------------------------------------------
def test_warnings_are_one_line_each_and_once(cli, tmp_path, monkeypatch):
    def setup(self, cfg, run):
        for _ in range(3):
            warnings.warn("data.csv has 2 duplicate rows")
        warnings.warn("a runtime thing", RuntimeWarning)

    monkeypatch.setattr(FakeRecipe, "setup", setup)
    code, _, err = cli(*TRAIN, "--out", tmp_path / "r")
    assert code == 0, err
    assert err.splitlines() == ["polydiff: warning: data.csv has 2 duplicate rows", "polydiff: warning: a runtime thing"]


def test_debug_shows_the_traceback_of_a_user_error(cli, tmp_path, monkeypatch):
    code, _, err = cli("--debug", *TRAIN[:-3], "--device", "tpu", "--out", tmp_path / "r")
    assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("polydiff: error: --device 'tpu'")
    monkeypatch.setenv("POLYDIFF_DEBUG", "1")
    code, _, err = cli(*TRAIN[:-3], "--device", "tpu", "--out", tmp_path / "r")
    assert code == 2 and "Traceback" in err


def test_a_bug_keeps_its_traceback(cli, tmp_path, monkeypatch):
    def datasets(self, cfg, run):
        raise KeyError("a bug")

    monkeypatch.setattr(FakeRecipe, "datasets", datasets)
    with pytest.raises(KeyError, match="a bug"):
        cli(*TRAIN, "--out", tmp_path / "r")


# -- progress -------------------------------------------------------------------------------------------
def test_a_short_run_shows_progress_several_times(cli, tmp_path):
    code, _, err = cli(*TRAIN[:-1], "--out", tmp_path / "r", "--set", "train.log_every=100", "--max-steps", "30")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert len(lines) == 10 and lines[-1].startswith("step 30/30"), err


class _ProgressRecipe(FakeRecipe):
    """Uses the public progress helpers the way a plugin would."""

    name = "fake/progress"

    def sample(self, model, cfg, run, *, num, sampler, steps, seed, options):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return polydiff.sample(model, shape=(num, 2), sampler=sampler, steps=steps, generator=g,
                                   callback=sampling_callback(calls=1)).x

    def evaluate(self, model, cfg, run, samples_dir):
        return {"n": float(sum(1 for _ in track(range(5), label="evaluating fake/progress")))}


class _ProgressPlugin:
    @polydiff.hookimpl
    def register_recipes(self, register):
        register(_ProgressRecipe())


def test_sampling_and_evaluation_show_progress(tmp_path, capsys):
    with isolated_plugins(("fake", _ProgressPlugin())):
        assert main([*TRAIN[:1], "fake/progress", *TRAIN[2:], "--out", str(tmp_path / "r")]) == 0
        capsys.readouterr()
        assert main(["sample", str(tmp_path / "r"), "--out", str(tmp_path / "s"), "--steps", "20", "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert "sampling fake/progress: 8 sample(s), sampler euler, 20 steps, on cpu" in err
        assert "sampling fake/progress: 20/20 steps" in err and "sampling fake/progress: 2/20" in err
        assert main(["evaluate", str(tmp_path / "r"), "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert "evaluating fake/progress: 5/5" in err
        assert main(["sample", str(tmp_path / "r"), "--out", str(tmp_path / "s2"), "--device", "cpu", "--no-progress"]) == 0
        assert capsys.readouterr().err == ""


def test_progress_helpers_are_silent_outside_the_cli():
    assert sampling_callback() is None
    assert list(track([1, 2, 3])) == [1, 2, 3]


def test_work_progress_redraws_in_place_on_a_terminal():
    class Tty:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

        def flush(self):
            pass

        def isatty(self):
            return True

    tty = Tty()
    with reporting("sampling x", stream=tty):
        cb = sampling_callback()
        for i in range(3):
            cb(type("Info", (), {"step": i, "n_steps": 3})())
    assert tty.text.startswith("\r[") and tty.text.endswith("\n") and tty.text.count("\n") == 1
    p = WorkProgress("w", 10, stream=tty)
    p.update(10)
    assert "10/10" in tty.text


def test_demo_says_which_recipe_and_phase_and_makes_no_empty_folders(tmp_path, capsys):
    with isolated_plugins(("fake", FakePlugin())):
        assert main(["demo", "--out", str(tmp_path), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    for phase in ("train (preset tiny)", "sample", "evaluate", "report", "ok in"):
        assert f"demo [1/1] fake/points: {phase}" in err, err
    assert not (tmp_path / "figures").exists()  # the fake recipe draws no figures


# -- discoverability --------------------------------------------------------------------------------------
def test_recipes_lists_and_describes(cli):
    code, out, _ = cli("recipes")
    assert code == 0 and out.startswith("fake/points  [fake]  presets: tiny")
    code, out, _ = cli("recipes", "fake/points")
    assert code == 0
    assert re.search(r"\n  model\.width +int = 8\n", out) and re.search(r"\n  train\.bf16 +bool = false\n", out)
    assert re.search(r"\n  data\.kind +Literal\['line', 'ring'\] = 'line'\n", out)
    assert "tiny: train.steps=3, model.width=4" in out
    assert "--scale FLOAT  (default 1.0)  multiply samples" in out
    _one_line_error(*cli("recipes", "fake/nope")[::2], "unknown recipe 'fake/nope'")


def test_sample_help_lists_the_runs_options(cli, run_dir):
    code, out, _ = cli("sample", run_dir, "--help")
    assert code == 0
    assert "sample options of recipe 'fake/points'" in out and "--label STR" in out and "--flip  (default false)" in out


def test_show_prints_the_run_and_writes_the_loss_curve(cli, tmp_path):
    run = tmp_path / "run"
    assert cli(*TRAIN, "--out", run, "--set", "train.log_every=1")[0] == 0
    code, out, err = cli("show", run)
    assert code == 0, err
    assert "recipe fake/points; 3 of train.steps=3 steps done" in out and "last metrics: step 3, loss" in out
    assert 'recipe = "fake/points"' in out
    pytest.importorskip("matplotlib")
    assert "loss curve: " in out and (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_relative_data_path_is_stored_absolute_and_evaluate_may_move_it(cli, tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("0,0\n")
    monkeypatch.chdir(tmp_path)
    assert cli(*TRAIN, "--out", "run", "--set", "data.path=d.csv")[0] == 0
    assert f'path = "{tmp_path / "d.csv"}"' in (tmp_path / "run" / "config.toml").read_text()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "moved.csv").write_text("0,0\n")
    code, out, err = cli("evaluate", tmp_path / "run", "--set", "data.path=../moved.csv", "--device", "cpu")
    assert code == 0, err


def test_run_files_follow_the_umask(cli, run_dir):
    old = os.umask(0o022)
    os.umask(old)
    want = 0o666 & ~old
    files = [run_dir / "config.toml", *(run_dir / "checkpoints").glob("step-*/*.safetensors")]
    assert len(files) >= 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == want, f


def test_a_failed_write_leaves_no_empty_folder(cli, run_dir, tmp_path, monkeypatch):
    def write_samples(self, samples, out_dir, cfg, run):
        raise DataError("cannot write these samples")

    monkeypatch.setattr(FakeRecipe, "write_samples", write_samples)
    code, _, err = cli("sample", run_dir, "--out", tmp_path / "s", "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "cannot write these samples")
    assert not (tmp_path / "s").exists()


def test_show_without_matplotlib_says_it_skipped_the_plot(cli, run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = cli("show", run_dir)
    assert code == 0, err
    assert "loss curve: skipped (matplotlib is not installed" in out and not (run_dir / "loss.png").exists()
