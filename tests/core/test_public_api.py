"""The documented public API: names, signatures and that every ``__all__`` entry imports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import polydiff
from polydiff import processes, samplers


def _modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(polydiff.__path__, "polydiff.") if not info.name.endswith("__main__")
    )


@pytest.mark.parametrize("module", ["polydiff"] + _modules())
def test_every_all_entry_resolves(module):
    mod = importlib.import_module(module)
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{module}.__all__ lists {name!r} but the module has no such attribute"


def test_sample_signature_keywords():
    sig = inspect.signature(polydiff.sample)
    params = sig.parameters
    names = ["shape", "like", "sampler", "steps", "generator", "cond", "guidance", "t_start"]
    for name in names:
        assert name in params, f"polydiff.sample lacks keyword {name!r}"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(params)[0] == "model"
    assert params["sampler"].default == "euler" and params["t_start"].default == 1.0


def test_top_level_names():
    for name in ("Denoiser", "sample", "processes", "samplers", "spaces", "schedules", "guided", "StateDict", "Prediction"):
        assert name in polydiff.__all__ and hasattr(polydiff, name)
    assert issubclass(polydiff.Denoiser, torch.nn.Module)
    from polydiff.likelihood import LikelihoodResult, log_likelihood  # noqa: F401
    from polydiff.testing import DataSpaceContract, GuidanceContract, ProcessContract, SamplerContract  # noqa: F401


def test_processes_and_samplers_registries():
    assert callable(processes.get) and callable(processes.names)
    names = processes.names()
    assert names == sorted(names)
    p = processes.get("vp-cosine")
    assert p.name == "vp-cosine"
    gaussian = samplers.names(p)
    assert {"euler", "ddim"} <= set(gaussian)
    discrete = samplers.names(processes.get("masked", vocab_size=4))
    assert "euler" not in discrete
    assert set(samplers.names()) >= set(gaussian) | set(discrete)
    with pytest.raises(ValueError, match="euler"):
        samplers.get_sampler("no-such-sampler")


def test_sample_end_to_end_with_documented_keywords():
    p = processes.get("vp-cosine")
    from polydiff.testing import GaussianOracleNet

    model = polydiff.Denoiser(GaussianOracleNet(p), p, prediction="x0")
    res = polydiff.sample(model, shape=(2, 3), sampler="euler", steps=3, generator=torch.Generator().manual_seed(0),
                          cond=None, guidance=(), t_start=1.0)
    assert res.x.shape == (2, 3) and res.nfe == 3 and res.steps == 3
    with pytest.raises(ValueError, match="ddim"):
        polydiff.sample(model, shape=(2, 3), sampler="nope")
