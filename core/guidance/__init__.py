"""Guidance: model wrappers (classifier-free, classifier gradient, DPS / reconstruction, CG data
consistency, DDS, hard data consistency, ΠGDM), the RED-diff variational solver and state corrections (replacement), plus measurement operators.

Every guidance class has a ``name`` class attribute; wrappers that differentiate through the model
have ``needs_grad = True`` (then :func:`polydiff.sample` runs with gradients enabled).
"""

from .base import Guidance, GuidedModel, guided, split_guidance
from .classifier import ClassifierGradient, ScoreGuidance, ScoreGuidedModel
from .classifier_free import ClassifierFree, ClassifierFreeModel
from .data_consistency import ConjugateGradientConsistency, ConjugateGradientModel, cg_solve
from .inverse_solvers import DDS, DataConsistency, PiGDM, REDDiff, SolveResult
from .operators import AdjointCheck, MaskOperator, MatrixOperator, MeasurementOperator, check_adjoint
from .reconstruction import DPS, Reconstruction
from .replacement import Replacement

__all__ = [
    "DDS",
    "DPS",
    "AdjointCheck",
    "ClassifierFree",
    "ClassifierFreeModel",
    "ClassifierGradient",
    "ConjugateGradientConsistency",
    "ConjugateGradientModel",
    "DataConsistency",
    "Guidance",
    "GuidedModel",
    "MaskOperator",
    "MatrixOperator",
    "MeasurementOperator",
    "PiGDM",
    "REDDiff",
    "Reconstruction",
    "Replacement",
    "ScoreGuidance",
    "ScoreGuidedModel",
    "SolveResult",
    "cg_solve",
    "check_adjoint",
    "guided",
    "split_guidance",
]
