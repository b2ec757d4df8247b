"""Importing the core stays light: no plugin and no heavy optional dependency is loaded (DESIGN.md §1).

One subprocess (a fresh interpreter, so other tests' imports do not count) records ``sys.modules``
after ``import polydiff`` and again after importing every ``polydiff.*`` module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FORBIDDEN = ("rdkit", "e3nn", "torchaudio", "torch_geometric", "scipy", "pandas", "tokenizers")

_PROBE = """
import importlib, json, pkgutil, sys
import polydiff
after_import = sorted(sys.modules)
for info in pkgutil.walk_packages(polydiff.__path__, "polydiff."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps({"import": after_import, "all": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYDIFF_")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _heavy(mods: list[str]) -> list[str]:
    return [m for m in mods if m.split(".")[0] in FORBIDDEN]


def _plugins(mods: list[str]) -> list[str]:
    return [m for m in mods if m.startswith("polydiff_")]


def test_import_polydiff_loads_no_plugin_and_no_heavy_dependency(loaded):
    assert "polydiff" in loaded["import"]
    assert _heavy(loaded["import"]) == []
    assert _plugins(loaded["import"]) == []


def test_import_polydiff_does_not_import_the_cli(loaded):
    """The CLI (and typer) is the top layer: imported when commands are needed, not by ``import polydiff``."""
    assert "polydiff.cli" not in loaded["import"] and "typer" not in loaded["import"]
    assert "polydiff.plugins" in loaded["import"]  # the plugin layer is imported (it wires the lookups) ...


_SAMPLE_PROBE = """
import json, sys
import torch
import polydiff
from polydiff.testing import GaussianOracleNet
p = polydiff.processes.get("vp-cosine")
res = polydiff.sample(polydiff.Denoiser(GaussianOracleNet(p), p), shape=(2, 3), sampler="heun", steps=2,
                      generator=torch.Generator().manual_seed(0))
print(json.dumps({"nfe": res.nfe, "modules": sorted(sys.modules)}))
"""


def test_sampling_with_built_in_names_loads_no_plugin():
    """... but a built-in process or sampler name is found without loading any plugin (DESIGN.md §3)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYDIFF_")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", _SAMPLE_PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["nfe"] > 0
    assert _plugins(got["modules"]) == [] and "polydiff.cli" not in got["modules"]


def test_every_core_module_imports_without_heavy_dependencies(loaded):
    """Importing every ``polydiff.*`` module (CLI, testing, training included) still loads none of them."""
    assert "polydiff.likelihood.ode" in loaded["all"]
    assert _heavy(loaded["all"]) == []
    assert _plugins(loaded["all"]) == []
