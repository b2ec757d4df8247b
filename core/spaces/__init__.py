"""Data spaces: how per-sample scalars, noise and reductions act on each data structure."""

from .base import DataSpace, split_generator
from .composite import CompositeSpace, infer_space
from .dense import DenseSpace, MaskedSpace
from .ragged import RaggedSpace, ZeroCoMSpace
from .symmetric import SymmetricMatrixSpace

__all__ = [
    "CompositeSpace",
    "DataSpace",
    "DenseSpace",
    "MaskedSpace",
    "RaggedSpace",
    "SymmetricMatrixSpace",
    "ZeroCoMSpace",
    "infer_space",
    "split_generator",
]
