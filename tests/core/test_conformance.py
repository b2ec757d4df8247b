"""The core's own spaces, processes, samplers and guidance pass the public conformance classes.

Processes and samplers are parametrized over the registries at collection time, so new built-ins
(or plugin-registered ones) are picked up automatically.
"""

from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff import processes, samplers
from polydiff.guidance import ClassifierFree, Replacement
from polydiff.processes import DiscreteProcess, GaussianProcess, ProductProcess
from polydiff.spaces import CompositeSpace, DenseSpace, MaskedSpace, RaggedSpace, ZeroCoMSpace
from polydiff.testing import DataSpaceContract, GuidanceContract, ProcessContract, SamplerContract
from polydiff.testing.oracles import CompositeOracleNet, GaussianOracleNet

VOCAB = 5
SEG = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])  # three samples of 3, 2 and 4 rows
MASK = torch.tensor([[True, True, True, False], [True, False, False, False], [True, True, True, True]])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- spaces ----------------------------------------------------------------------------------------
SPACES = {
    "dense-B": lambda: (DenseSpace(), torch.randn(3, generator=_gen(0), dtype=torch.float64)),
    "dense-BD": lambda: (DenseSpace(), torch.randn(3, 4, generator=_gen(0), dtype=torch.float64)),
    "dense-BCL": lambda: (DenseSpace(), torch.randn(3, 2, 5, generator=_gen(0), dtype=torch.float64)),
    "masked": lambda: (MaskedSpace(MASK), torch.randn(3, 4, 2, generator=_gen(0), dtype=torch.float64)),
    "ragged": lambda: (RaggedSpace(SEG), torch.randn(9, 3, generator=_gen(0), dtype=torch.float64)),
    "zero-com": lambda: (ZeroCoMSpace(SEG), ZeroCoMSpace(SEG).project(torch.randn(9, 3, generator=_gen(0), dtype=torch.float64))),
    "composite": lambda: (
        CompositeSpace({"pos": ZeroCoMSpace(SEG), "h": MaskedSpace(MASK), "y": DenseSpace()}),
        {
            "pos": ZeroCoMSpace(SEG).project(torch.randn(9, 3, generator=_gen(0), dtype=torch.float64)),
            "h": torch.randn(3, 4, generator=_gen(1), dtype=torch.float64),
            "y": torch.randn(3, 2, generator=_gen(2), dtype=torch.float64),
        },
    ),
}


class TestCoreSpaces(DataSpaceContract):
    @pytest.fixture(autouse=True, params=sorted(SPACES))
    def _space(self, request):
        self.space_kind = request.param

    def make_space_and_state(self):
        return SPACES[self.space_kind]()


# -- processes -------------------------------------------------------------------------------------
def _build_process(name: str):
    if name in ("masked", "uniform"):
        return processes.get(name, vocab_size=VOCAB)
    if name == "product":
        return processes.get("product", components={"pos": processes.get("vp-linear"), "tok": processes.get("masked", vocab_size=VOCAB)})
    return processes.get(name)


def _state_for(process, b: int = 3):
    if isinstance(process, ProductProcess):
        return {"pos": ZeroCoMSpace(SEG).project(torch.randn(9, 3, generator=_gen(0), dtype=torch.float64)),
                "tok": torch.randint(0, VOCAB, (3, 6), generator=_gen(1))}
    if isinstance(process, DiscreteProcess):
        return torch.randint(0, process.vocab_size, (b, 6), generator=_gen(1))
    return torch.randn(b, 4, generator=_gen(0), dtype=torch.float64)


def _space_for(process, x):
    if isinstance(process, ProductProcess):
        return CompositeSpace({"pos": ZeroCoMSpace(SEG), "tok": DenseSpace()})
    return None


def _cond_for(process, x):
    if isinstance(process, GaussianProcess) and process.has_offset:
        return {"y": torch.randn(x.shape, generator=_gen(5), dtype=x.dtype)}
    return None


def _constructible() -> list[str]:
    out = []
    for name in processes.names():
        try:
            _build_process(name)
        except (TypeError, ValueError):  # plugin processes that need parameters are tested by their plugin
            continue
        out.append(name)
    return out


class TestCoreProcesses(ProcessContract):
    @pytest.fixture(autouse=True, params=_constructible())
    def _process(self, request):
        self.process_name = request.param

    def make_process(self):
        return _build_process(self.process_name)

    def make_state(self):
        return _state_for(self.make_process())

    def make_space(self, x_0):
        return _space_for(self.make_process(), x_0)

    def make_cond(self, x_0):
        return _cond_for(self.make_process(), x_0)


class TestGaussianOnZeroCoM(ProcessContract):
    def make_process(self):
        return processes.get("vp-cosine")

    def make_state(self):
        return ZeroCoMSpace(SEG).project(torch.randn(9, 3, generator=_gen(0), dtype=torch.float64))

    def make_space(self, x_0):
        return ZeroCoMSpace(SEG)


class TestMaskedTokensOnPaddedSpace(ProcessContract):
    def make_process(self):
        return processes.get("masked", vocab_size=VOCAB, schedule="cosine")

    def make_state(self):
        return torch.randint(0, VOCAB, (3, 4), generator=_gen(0))

    def make_space(self, x_0):
        return MaskedSpace(MASK)


# -- samplers --------------------------------------------------------------------------------------
class _UniformLogits(torch.nn.Module):
    """Batch-independent logits that depend on position only: ``(..., vocab)``."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, x_t, t, **cond):
        pos = torch.arange(x_t.shape[-1], dtype=torch.float64)
        return (pos[:, None] * torch.arange(self.vocab, dtype=torch.float64) / 10).expand(*x_t.shape, self.vocab)


class _MixedNet(torch.nn.Module):
    def __init__(self, process) -> None:
        super().__init__()
        self.pos = GaussianOracleNet(process.components["pos"], 0.0, 0.7, space=ZeroCoMSpace(SEG))
        self.tok = _UniformLogits(VOCAB)

    def forward(self, x_t, t, **cond):
        return {"pos": self.pos(x_t["pos"], t), "tok": self.tok(x_t["tok"], t)}


SAMPLER_SETUPS = {
    "gaussian": lambda: processes.get("vp-cosine"),
    "gaussian-product": lambda: processes.get("product", components={"a": processes.get("vp-linear"), "b": processes.get("ve")}),
    "masked": lambda: processes.get("masked", vocab_size=VOCAB),
    "uniform": lambda: processes.get("uniform", vocab_size=VOCAB),
    "mixed-product": lambda: processes.get("product", components={"pos": processes.get("flow"), "tok": processes.get("masked", vocab_size=VOCAB)}),
}


def _model_for(setup: str):
    process = SAMPLER_SETUPS[setup]()
    if setup == "gaussian":
        return polydiff.Denoiser(GaussianOracleNet(process, 0.5, 0.8), process, prediction="x0")
    if setup == "gaussian-product":
        net = CompositeOracleNet({"a": GaussianOracleNet(process.components["a"], 0.2, 1.0), "b": GaussianOracleNet(process.components["b"], -0.3, 0.5)})
        return polydiff.Denoiser(net, process, prediction={"a": "x0", "b": "x0"})
    if setup in ("masked", "uniform"):
        return polydiff.Denoiser(_UniformLogits(VOCAB), process, prediction="x0_logits")
    return polydiff.Denoiser(_MixedNet(process), process, prediction={"pos": "x0", "tok": "x0_logits"})


def _like_for(setup: str):
    if setup == "gaussian":
        return torch.zeros(3, 4, dtype=torch.float64)
    if setup == "gaussian-product":
        return {"a": torch.zeros(3, 2, dtype=torch.float64), "b": torch.zeros(3, 3, dtype=torch.float64)}
    if setup in ("masked", "uniform"):
        return torch.zeros(3, 6, dtype=torch.int64)
    return {"pos": torch.zeros(9, 3, dtype=torch.float64), "tok": torch.zeros(3, 6, dtype=torch.int64)}


def _sampler_cases() -> list:
    cases = []
    for setup, make in SAMPLER_SETUPS.items():
        for name in samplers.names(make()):
            cases.append(pytest.param((setup, name), id=f"{setup}-{name}"))
    return cases


class TestCoreSamplers(SamplerContract):
    steps = 4

    @pytest.fixture(autouse=True, params=_sampler_cases())
    def _case(self, request):
        self.setup, self.sampler_name = request.param

    def make_model(self):
        return _model_for(self.setup)

    def make_like(self):
        return _like_for(self.setup)

    def make_space(self, like):
        if self.setup == "mixed-product":
            return CompositeSpace({"pos": ZeroCoMSpace(SEG), "tok": DenseSpace()})
        return None


def test_sampler_cases_cover_euler_and_ddim():
    ids = {c.values[0] for c in _sampler_cases()}
    assert {("gaussian", "euler"), ("gaussian", "ddim")} <= ids


# -- guidance --------------------------------------------------------------------------------------
class _CondOracle(torch.nn.Module):
    def __init__(self, process) -> None:
        super().__init__()
        self.oracle = GaussianOracleNet(process, 0.0, 1.0)

    def forward(self, x_t, t, y):
        return self.oracle(x_t, t) + 0.1 * y


class TestClassifierFreeGuidance(GuidanceContract):
    def make_guidance(self):
        return ClassifierFree(scale=2.0, drop_key="y")

    def make_model(self):
        process = processes.get("vp-cosine")
        return polydiff.Denoiser(_CondOracle(process), process, prediction="x0")

    def make_like(self):
        return torch.zeros(3, 4, dtype=torch.float64)

    def make_cond(self, like):
        return {"y": torch.ones_like(like)}


class TestReplacementGuidance(GuidanceContract):
    sampler_name = "ddim"

    def make_guidance(self):
        known = torch.full((3, 4), 2.0, dtype=torch.float64)
        mask = torch.tensor([True, False, False, True])
        return Replacement(known, mask)

    def make_model(self):
        process = processes.get("vp-linear")
        return polydiff.Denoiser(GaussianOracleNet(process, 0.0, 1.0), process, prediction="x0")

    def make_like(self):
        return torch.zeros(3, 4, dtype=torch.float64)


# -- pytest plugin fixtures ------------------------------------------------------------------------
def test_polydiff_generator_fixture_is_seeded(polydiff_generator, polydiff_generators):
    from polydiff.testing.pytest_plugin import POLYDIFF_TEST_SEED

    expected = torch.rand(3, generator=torch.Generator().manual_seed(POLYDIFF_TEST_SEED))
    assert torch.equal(torch.rand(3, generator=polydiff_generator), expected)
    gens = polydiff_generators(3, seed=5)
    assert len(gens) == 3 and torch.equal(torch.rand(1, generator=gens[1]), torch.rand(1, generator=torch.Generator().manual_seed(6)))


class _ToyProcessPlugin:
    @polydiff.hookimpl
    def register_processes(self, register):
        register("conformance-toy", lambda: processes.get("flow"), description="a toy process for the fixture test")


def test_plugin_manager_fixture_isolates_registrations(plugin_manager):
    from polydiff.plugins import plugin_infos, register_plugin

    assert {i.name for i in plugin_infos()} == {"polydiff"}  # built-ins only, no entry points
    register_plugin(_ToyProcessPlugin(), "conformance-toy-plugin")
    assert "conformance-toy" in processes.names()
    assert plugin_manager.has_plugin("conformance-toy-plugin")


def test_plugin_manager_fixture_restores_state():
    assert "conformance-toy" not in processes.names()
