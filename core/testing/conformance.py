"""Conformance test classes for plugin authors: subclass them in your own ``test_*.py``.

Each class holds ``test_*`` methods; its name does not start with ``Test`` so pytest only runs it
through a subclass you name ``Test...`` (the pattern of diffusers' ``SchedulerCommonTest``)::

    from polydiff.testing import ProcessContract

    class TestMyProcess(ProcessContract):
        def make_process(self):
            return MyProcess()

        def make_state(self):
            return torch.randn(4, 3, dtype=torch.float64)

The core's own spaces, processes, samplers and guidance pass the same classes
(``tests/core/test_conformance.py``).
"""

from .conformance_process import ProcessContract
from .conformance_sampler import GuidanceContract, SamplerContract
from .conformance_space import DataSpaceContract, assert_same_structure, per_sample_differs, per_sample_generators

__all__ = [
    "DataSpaceContract",
    "GuidanceContract",
    "ProcessContract",
    "SamplerContract",
    "assert_same_structure",
    "per_sample_differs",
    "per_sample_generators",
]
