"""The shared CLI, in-process: train → sample → evaluate with a tiny recipe, resume rules, error paths, demo."""

from __future__ import annotations

import json
import tomllib


from polydiff import hookimpl
from polydiff.cli import main
from polydiff.demo import demo_recipes
from polydiff.errors import CheckpointError
from polydiff.plugins import isolated_plugins

from framework_fakes import FakePlugin, FakeRecipe


def _one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.startswith("polydiff: error: ") and err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


def test_train_sample_evaluate(cli, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("train", "fake/points", "--out", run, "--preset", "tiny", "--set", "model.width=6",
                         "--seed", "3", "--checkpoint-every", "1", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "trained 3 steps" in out
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["recipe"] == "fake/points"
    assert (saved["model"]["width"], saved["train"]["seed"], saved["train"]["checkpoint_every"]) == (6, 3, 1)

    code, out, err = cli("sample", run, "--out", tmp_path / "s", "--num", "5", "--steps", "3", "--device", "cpu",
                         "--scale", "2", "--opt", "label=b", "--flip")
    assert code == 0, err
    assert FakeRecipe.last_options == {"scale": 2.0, "label": "b", "flip": True}
    assert len((tmp_path / "s" / "points.csv").read_text().splitlines()) == 5

    code, out, err = cli("evaluate", run, "--samples", tmp_path / "s", "--out", tmp_path / "m.json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out) == json.loads((tmp_path / "m.json").read_text()) == {"n": 5.0, "width": 6.0}

    # evaluate --set changes evaluation settings only: what defines the trained model is refused, in one line
    for key in ("model.width=3", "train.steps=9", "data.n=4"):
        code, _, err = cli("evaluate", run, "--set", key, "--device", "cpu")
        _one_line_error(code, err, repr(key), key.split(".")[0] + ".* settings cannot be changed")
    code, _, err = cli("evaluate", run, "--set", "nosuch.key=1", "--device", "cpu")
    _one_line_error(code, err, "'nosuch'")
    assert cli("evaluate", run, "--set", "sample.steps=5", "--device", "cpu")[0] == 0


def test_resume_refuses_a_changed_config(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "fake/points", "--out", run, "--preset", "tiny", "--device", "cpu", "--no-progress")[0] == 0
    code, out, err = cli("train", "fake/points", "--out", run, "--preset", "tiny", "--set", "train.lr=0.5",
                         "--resume", "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "train.lr: saved 0.0003, now 0.5", "--max-steps")
    code, out, err = cli("train", "fake/points", "--out", run, "--preset", "tiny", "--max-steps", "3", "--resume",
                         "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "already finished at step 3", "--max-steps")
    code, out, err = cli("train", "fake/points", "--out", run, "--preset", "tiny", "--max-steps", "5", "--resume",
                         "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "trained 2 steps (steps 3->5; 5 in total)" in out
    code, out, err = cli("train", "fake/points", "--out", run, "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "already holds a trained run", "--resume")


def test_unknown_recipe_lists_the_known_ones(cli, tmp_path):
    code, _, err = cli("train", "fake/pointz", "--out", tmp_path / "r")
    _one_line_error(code, err, "unknown recipe 'fake/pointz'; known recipes: fake/points")


def test_unknown_set_key(cli, tmp_path):
    code, _, err = cli("train", "fake/points", "--out", tmp_path / "r", "--set", "model.depth=3")
    _one_line_error(code, err, "unknown config key 'model.depth'", "valid keys in 'model': width, betas")
    assert not (tmp_path / "r").exists()


def test_missing_data_file(cli, tmp_path):
    code, _, err = cli("train", "fake/points", "--out", tmp_path / "r", "--set", f"data.path={tmp_path}/nope.csv",
                       "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "nope.csv", "does not exist")


def test_value_error_in_setup_is_one_line(cli, tmp_path, monkeypatch):
    def setup(self, cfg, run):
        raise ValueError("data.csv line 3: expected 2 columns")

    monkeypatch.setattr(FakeRecipe, "setup", setup)
    code, _, err = cli("train", "fake/points", "--out", tmp_path / "r", "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "recipe 'fake/points': data.csv line 3: expected 2 columns")


def test_missing_extra_gives_the_pip_command(cli, tmp_path, monkeypatch):
    def datasets(self, cfg, run):
        raise ModuleNotFoundError("No module named 'rdkit'", name="rdkit")

    monkeypatch.setattr(FakeRecipe, "datasets", datasets)
    code, _, err = cli("train", "fake/points", "--out", tmp_path / "r", "--device", "cpu", "--no-progress")
    _one_line_error(code, err, "rdkit is not installed; install it with: pip install 'polydiff[molecules]'")


def test_corrupt_checkpoint(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli("train", "fake/points", "--out", run, "--preset", "tiny", "--device", "cpu", "--no-progress")[0] == 0

    def load_model(*args, **kwargs):
        raise CheckpointError(f"checkpoint {run}/checkpoints/step-3/model.safetensors is corrupt (checksum mismatch)")

    import polydiff.training

    monkeypatch.setattr(polydiff.training, "load_model", load_model)
    code, _, err = cli("sample", run, "--out", tmp_path / "s", "--device", "cpu")
    _one_line_error(code, err, "model.safetensors is corrupt")
    code, _, err = cli("evaluate", run, "--device", "cpu")
    _one_line_error(code, err, "model.safetensors is corrupt")


def test_sample_usage_errors(cli, tmp_path):
    code, _, err = cli("sample", tmp_path, "--out", tmp_path / "s")
    _one_line_error(code, err, "is not a run directory")
    run = tmp_path / "run"
    assert cli("train", "fake/points", "--out", run, "--preset", "tiny", "--device", "cpu", "--no-progress")[0] == 0
    code, _, err = cli("sample", run, "--out", tmp_path / "s", "--temperature", "2")
    _one_line_error(code, err, "no sample option --temperature", "--scale, --label, --flip")
    code, _, err = cli("sample", run, "--out", tmp_path / "s", "--scale", "big")
    _one_line_error(code, err, "--scale: expected float, got 'big'")
    code, _, err = cli("sample", run, "--out", tmp_path / "s", "--sampler", "nope")
    _one_line_error(code, err, "unknown sampler 'nope'", "euler")


def test_typer_usage_errors_are_one_line(cli):
    _one_line_error(*cli("train", "fake/points")[::2], "Missing option '--out'")
    _one_line_error(*cli("no-such-command")[::2], "No such command")


def test_plugins_lists_the_fake_plugin(cli):
    code, out, _ = cli("plugins", "--json")
    infos = {p["name"]: p for p in json.loads(out)}
    assert code == 0 and infos["fake"]["status"] == "loaded" and infos["fake"]["recipes"] == ["fake/points"]
    code, out, _ = cli("plugins")
    assert "fake ? [loaded]" in out and "recipes: fake/points" in out


class _Broken(FakeRecipe):
    name = "broken/points"
    presets = {"tiny": {"train.steps": 2}}

    def datasets(self, cfg, run):
        raise RuntimeError("this recipe is broken")


class _TwoRecipes:
    @hookimpl
    def register_recipes(self, register):
        register(_Broken())


class _Marked(FakeRecipe):
    name = "other/marked"
    demo = True


class _ThreeRecipes:
    @hookimpl
    def register_recipes(self, register):
        class First(FakeRecipe):
            name = "other/first"

        register(First())
        register(_Marked())


def test_demo_recipe_selection():
    with isolated_plugins(("fake", FakePlugin()), ("other", _ThreeRecipes())):
        assert demo_recipes() == ["fake/points", "other/marked"]


def test_demo_reports_every_recipe_and_a_failure(tmp_path, capsys):
    with isolated_plugins(("fake", FakePlugin()), ("broken", _TwoRecipes())):
        code = main(["demo", "--out", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1
    assert "fake/points: ok" in out and "broken/points: FAILED: RuntimeError: this recipe is broken" in out
    report = (tmp_path / "report.md").read_text()
    assert "| fake/points | ok | 3 |" in report and "| broken/points | failed |" in report
    assert "| n | 8 |" in report  # the metrics table of report(): the fake samples sample.num = 8 points
    assert (tmp_path / "runs" / "broken-points" / "error.txt").read_text().count("this recipe is broken") >= 1


def test_a_failed_plugin_is_one_warning_line_and_the_cli_works(tmp_path, capsys, monkeypatch):
    (tmp_path / "pd_cli_broken.py").write_text("raise ImportError('needs the foo package')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib.metadata

    ep = importlib.metadata.EntryPoint(name="brokenx", value="pd_cli_broken", group="polydiff")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [ep])
    from polydiff.plugins import reset_plugins

    reset_plugins()
    try:
        assert main(["plugins"]) == 0
    finally:
        reset_plugins()
    out = capsys.readouterr()
    assert "brokenx ? [failed] ImportError: needs the foo package" in out.out
    assert out.err == "polydiff: warning: polydiff plugin 'brokenx' failed to load: ImportError: needs the foo package\n"
