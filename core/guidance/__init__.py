"""Guidance: model wrappers (classifier-free, classifier gradient, DPS, CG data consistency) and state corrections (replacement)."""

from .base import Guidance, GuidedModel, guided, split_guidance

__all__ = ["Guidance", "GuidedModel", "guided", "split_guidance"]
