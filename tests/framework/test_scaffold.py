"""``polydiff new-plugin``: the package installs (into a throw-away venv), lists, trains, samples, evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path


from polydiff.cli import main
from polydiff.scaffold import plugin_names, render


def test_names_and_rendering():
    names = plugin_names("my-dots")
    assert (names["dist"], names["package"], names["entry_point"], names["recipe"]) == (
        "polydiff-my-dots", "polydiff_my_dots", "my_dots", "my_dots/mixture")
    files = render("my-dots")
    pyproject = tomllib.loads(files["pyproject.toml"])
    assert pyproject["project"]["entry-points"]["polydiff"] == {"my_dots": "polydiff_my_dots.plugin"}
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")  # every template renders to valid Python


def test_scaffold_is_the_maintained_toy_recipe_and_stays_small():
    """The plugin's recipe.py is polydiff.testing.toy_recipe (up to its test helpers) with the names replaced,
    and the whole plugin, tests included, is at most 200 lines of Python (the plugin guide states the size)."""
    import inspect

    from polydiff.testing import toy_recipe

    files = render("my-dots")
    recipe = files["src/polydiff_my_dots/recipe.py"]
    assert "class MyDotsRecipe(Recipe):" in recipe and 'name = "my_dots/mixture"' in recipe
    assert "Toy" not in recipe.replace("ToyConfig", "").replace("ToyModelConfig", "").replace("ToyDataConfig", "").replace(
        "ToyMLP", "") and "toy_config" not in recipe
    toy_body = inspect.getsource(toy_recipe).split("class ToyRecipe(Recipe):", 1)[1].split("# -- below:", 1)[0]
    assert recipe.split("class MyDotsRecipe(Recipe):", 1)[1].strip() == toy_body.replace(
        '"toy/gaussian-mixture"', '"my_dots/mixture"').strip()
    lines = sum(len(text.splitlines()) for path, text in files.items() if path.endswith(".py"))
    assert lines <= 200, f"the scaffold has {lines} lines of Python"


def test_bad_name_and_existing_folder(tmp_path, capsys):
    assert main(["new-plugin", "My Plugin", "--out", str(tmp_path)]) == 2
    assert "plugin name 'My Plugin' is not valid" in capsys.readouterr().err
    assert main(["new-plugin", "dots", "--out", str(tmp_path)]) == 0
    assert main(["new-plugin", "dots", "--out", str(tmp_path)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYDIFF_")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list, cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**_env(), **env_extra})
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_new_plugin_installs_and_runs_end_to_end(tmp_path):
    assert main(["new-plugin", "dots", "--out", str(tmp_path)]) == 0
    pkg = tmp_path / "polydiff-dots"
    # a throw-away venv that sees the shared environment's packages (the shared venv stays clean)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip())
    shared = sysconfig.get_paths()["purelib"]
    (purelib / "_polydiff_shared.pth").write_text(f"import site; site.addsitedir({shared!r})\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--disable-pip-version-check", "--no-index",
          "--no-deps", "--no-build-isolation", "-e", pkg], tmp_path)

    listed = _run([py, "-m", "polydiff.cli", "plugins", "--json"], tmp_path, POLYDIFF_LOAD_PLUGINS="dots").stdout
    info = {p["name"]: p for p in json.loads(listed)}["dots"]
    assert (info["status"], info["version"], info["distribution"], info["recipes"]) == (
        "loaded", "0.1.0", "polydiff-dots", ["dots/mixture"])

    driver = (
        "import sys; from polydiff.cli import main\n"
        "for args in (['train', 'dots/mixture', '--out', 'run', '--preset', 'tiny', '--max-steps', '20',"
        " '--device', 'cpu', '--no-progress'],"
        " ['sample', 'run', '--out', 'samples', '--num', '50', '--steps', '8', '--device', 'cpu'],"
        " ['evaluate', 'run', '--samples', 'samples', '--out', 'metrics.json', '--device', 'cpu']):\n"
        "    code = main(args)\n"
        "    if code: sys.exit(f'{args[0]} exited with {code}')\n"
    )
    out = _run([py, "-c", driver], tmp_path, POLYDIFF_LOAD_PLUGINS="dots").stdout
    assert "trained 20 steps" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 50.0 and set(metrics) >= {"mean_error", "cov_error", "sliced_wasserstein"}
    assert len((tmp_path / "samples" / "samples.csv").read_text().splitlines()) == 51  # header + 50 rows

    # the scaffold's own tests pass in the new environment
    tests = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", pkg / "tests"], pkg).stdout
    assert "3 passed" in tests
