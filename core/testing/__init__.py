"""Testing helpers for polydiff and its plugins: analytic oracles and conformance test classes.

``polydiff.testing`` is also a pytest plugin (entry point ``pytest11: polydiff``) that provides the
``polydiff_generator`` and ``polydiff_generators`` fixtures.
"""

from .conformance import (
    DataSpaceContract,
    GuidanceContract,
    ProcessContract,
    SamplerContract,
    assert_same_structure,
    per_sample_differs,
    per_sample_generators,
)
from .oracles import CompositeOracleNet, GaussianOracleNet, gaussian_log_density

__all__ = [
    "CompositeOracleNet",
    "DataSpaceContract",
    "GaussianOracleNet",
    "GuidanceContract",
    "ProcessContract",
    "SamplerContract",
    "assert_same_structure",
    "gaussian_log_density",
    "per_sample_differs",
    "per_sample_generators",
]
