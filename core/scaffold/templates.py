"""File templates of ``polydiff new-plugin`` (``string.Template``: ``$name``, ``$package``, ``$recipe``...)."""

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A polydiff plugin: the $recipe recipe (2-D Gaussian mixture, small MLP denoiser)."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["polydiff>=0.1"]

[project.optional-dependencies]
dev = ["pytest>=8"]

# polydiff finds the plugin through this entry point (group "polydiff", name = plugin name).
[project.entry-points.polydiff]
$entry_point = "$package.plugin"

[tool.setuptools.packages.find]
where = ["src"]
'''

README = '''\
# $dist

A [polydiff](https://github.com/) plugin made by `polydiff new-plugin $name`. It registers the recipe
`$recipe`: a 2-D Gaussian mixture learnt by a small MLP denoiser (presets `tiny`, `small`, `base`).

```bash
pip install -e .
polydiff plugins                      # lists "$entry_point" with the recipe $recipe
polydiff train $recipe --out runs/a --preset tiny
polydiff sample runs/a --out runs/a/samples
polydiff evaluate runs/a --samples runs/a/samples
pytest                                # the plugin's tests
```

Edit `src/$package/recipe.py` to bring your own data and network; see polydiff's `docs/plugin-guide.md`.
'''

INIT = '''\
"""$dist: a polydiff plugin."""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""Plugin hooks (entry point ``polydiff: $entry_point``). Import heavy dependencies inside hooks or factories."""

from polydiff import hookimpl


@hookimpl
def register_recipes(register):
    """Register the $recipe recipe."""
    from .recipe import ${Class}Recipe

    register(${Class}Recipe())
'''

TEST = '''\
"""Tests of the $name plugin: the data against exact moments, registration, and a tiny training run."""

import math

import torch

from polydiff.config import resolve_config
from polydiff.plugins import isolated_plugins
from polydiff.recipes import RunDir
from polydiff.training import load_model, train

from $package import plugin
from $package.recipe import ${Class}Recipe, mixture_moments, mixture_sample


def test_data_mean_matches_the_exact_mean(polydiff_generator):
    """The sample mean of n draws is within 5 standard errors (sqrt(var / n)) of the exact mean."""
    cfg = resolve_config(${Class}Recipe())
    n, seed = 20000, int(torch.randint(1000, (1,), generator=polydiff_generator))  # polydiff.testing fixture
    x = mixture_sample(cfg.data, n, seed, torch.float64)
    mean, cov = mixture_moments(cfg.data)
    assert ((x.mean(0) - mean).abs() <= 5 * (torch.diagonal(cov) / n).sqrt()).all()


def test_plugin_registers_the_recipe():
    with isolated_plugins(("$entry_point", plugin)) as regs:
        assert "$recipe" in regs.recipes.names()


def test_tiny_preset_trains_and_samples(tmp_path):
    recipe, run = ${Class}Recipe(), RunDir(tmp_path / "run")
    cfg = resolve_config(recipe, preset="tiny", overrides=["train.steps=20"])
    result = train(recipe, cfg, run, progress=False)
    assert result.steps == 20 and math.isfinite(result.final_loss)
    x = recipe.sample(load_model(recipe, cfg, run), cfg, run, num=16, sampler="euler", steps=4, seed=0, options={})
    assert x.shape == (16, 2) and torch.isfinite(x).all()
'''
