"""Likelihoods: probability-flow ODE log-density (exact or Hutchinson divergence) and discrete ELBOs."""

from .elbo import ElboResult, elbo
from .ode import LikelihoodResult, log_likelihood

__all__ = ["ElboResult", "LikelihoodResult", "elbo", "log_likelihood"]
