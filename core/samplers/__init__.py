"""Samplers: stateless functions with one signature, a registry, time grids and ``sample()``.

Importing the package imports the core's sampler modules (:mod:`.continuous`, :mod:`.discrete`),
each of which adds its samplers with :func:`register_builtin`.
"""

from . import continuous, discrete  # noqa: F401  (the built-in samplers register themselves)
from .api import sample
from .chunked import Chunk, ChunkedSamples, sample_in_chunks
from .base import SampleResult, SamplerContext, SamplerModel, SamplerSpec, StateCorrection, StepInfo
from .grids import GRID_KINDS, START_LOG_SNR, GridBySchedule, custom_grid, time_grid
from .registry import all_samplers, get_sampler, names, register_builtin

__all__ = [
    "GRID_KINDS",
    "Chunk",
    "ChunkedSamples",
    "GridBySchedule",
    "START_LOG_SNR",
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
    "sample_in_chunks",
    "time_grid",
]
