"""All built-in Gaussian samplers (importing this module registers them).

``euler``, ``heun``, ``dpm++2m`` (probability-flow ODE), ``ddim`` and ``ddpm`` (posterior steps),
``euler-maruyama`` and ``pc`` (reverse SDE).
"""

from . import ode, sde, stochastic  # noqa: F401
