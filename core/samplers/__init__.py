"""Samplers: stateless functions with one signature, a registry, time grids and ``sample()``."""

from .api import sample
from .base import SampleResult, SamplerContext, SamplerModel, SamplerSpec, StateCorrection, StepInfo
from .grids import GRID_KINDS, custom_grid, time_grid
from .registry import all_samplers, get_sampler, names, register_builtin

__all__ = [
    "GRID_KINDS",
    "SampleResult",
    "SamplerContext",
    "SamplerModel",
    "SamplerSpec",
    "StateCorrection",
    "StepInfo",
    "all_samplers",
    "custom_grid",
    "get_sampler",
    "names",
    "register_builtin",
    "sample",
    "time_grid",
]
