"""All built-in Gaussian samplers (importing this module registers them)."""

from . import ode, stochastic  # noqa: F401
