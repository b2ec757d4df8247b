"""polydiff: diffusion models for non-image data.

The core contract (DESIGN.md): data spaces, schedules, forward processes, the :class:`Denoiser`,
guidance, samplers and likelihoods. ``t = 0`` is data, ``t = 1`` is noise; per-sample scalars have
shape ``(B,)``.
"""

from . import guidance, losses, parameterisation, processes, samplers, schedules, spaces
from .denoiser import Denoiser, DiscreteDenoised, EDMPreconditioner, ProductDenoised
from .guidance import guided
from .hookspecs import hookimpl
from .losses import LossOutput, diffusion_loss
from .parameterisation import Denoised, convert
from .samplers import SampleResult, sample
from .state import StateDict
from .types import Prediction

__version__ = "0.1.0"
API_VERSION = "1"

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
    "processes",
    "sample",
    "samplers",
    "schedules",
    "spaces",
]
