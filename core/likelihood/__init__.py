"""Likelihoods: probability-flow ODE log-density (exact or Hutchinson divergence) and discrete ELBOs."""
