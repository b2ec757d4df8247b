"""polydiff: diffusion models for non-image data.

The core contract (docs/DESIGN.md): data spaces, schedules, forward processes, the :class:`Denoiser`,
guidance, samplers and likelihoods. ``t = 0`` is data, ``t = 1`` is noise; per-sample scalars have
shape ``(B,)``.

This package's ``__init__`` is the façade at the top of the layered core (docs/DESIGN.md §3) and the one
place that wires the layers together: it imports :mod:`polydiff.plugins`, which installs the plugin
registries as the source of the ``processes`` and ``samplers`` lookups, and hands the built-in plugin
the CLI's commands (imported only when the command table is first needed).
"""

import os as _os

# Idle OpenMP threads sleep instead of spinning, so training and sampling do not collapse when the
# cores are shared (benchmarks/results/cli_threads.md). It takes effect only when set before torch
# starts its thread pool, i.e. when polydiff is imported first (the CLI); an explicit setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import Any as _Any

from . import builtin_plugin as _builtin_plugin
from . import guidance, losses, parameterisation, plugins, processes, samplers, schedules, seeding, spaces
from ._version import __version__
from .denoiser import Denoiser, DiscreteDenoised, EDMPreconditioner, ProductDenoised
from .guidance import guided
from .hookspecs import hookimpl
from .losses import LossOutput, diffusion_loss
from .parameterisation import Denoised, convert
from .samplers import SampleResult, sample
from .state import StateDict
from .types import Prediction

API_VERSION = "1"


def _cli_commands(cli: _Any) -> None:
    """The core's CLI commands, for the built-in plugin's ``register_commands`` hook."""
    from .cli.commands import add_core_commands

    add_core_commands(cli)


_builtin_plugin.add_command_provider(_cli_commands)

__all__ = [
    "API_VERSION",
    "Denoised",
    "Denoiser",
    "DiscreteDenoised",
    "EDMPreconditioner",
    "LossOutput",
    "Prediction",
    "ProductDenoised",
    "SampleResult",
    "StateDict",
    "__version__",
    "convert",
    "diffusion_loss",
    "guidance",
    "guided",
    "hookimpl",
    "losses",
    "parameterisation",
    "plugins",
    "processes",
    "sample",
    "samplers",
    "seeding",
    "schedules",
    "spaces",
]
