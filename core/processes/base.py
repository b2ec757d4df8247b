"""The ForwardProcess contract and shared result types."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..spaces import DataSpace
from ..types import Cond, GeneratorLike, State


@dataclass(frozen=True)
class Noised:
    """A forward-noised batch: ``x_t`` at times ``t`` (``(B,)``) and the noise that made it.

    For Gaussian processes ``noise`` is the standard normal ``eps``; for discrete ones it is the
    boolean tensor of corrupted positions.
    """

    x_t: State
    t: Tensor
    noise: State


class ForwardProcess(ABC):
    """A forward (noising) process ``q(x_t | x_0)`` with ``t = 0`` data and ``t = 1`` the prior."""

    name: ClassVar[str] = "process"
    is_discrete: ClassVar[bool] = False

    @abstractmethod
    def schedule(self, t: Tensor) -> Any:
        """Schedule values at ``t`` of shape ``(B,)``; each field has shape ``(B,)``."""

    @abstractmethod
    def noise(
        self,
        x_0: State,
        t: Tensor,
        *,
        generator: GeneratorLike = None,
        space: DataSpace | None = None,
        cond: Cond | None = None,
    ) -> Noised:
        """Draw ``x_t ~ q(x_t | x_0)``; ``t`` has shape ``(B,)``."""

    @abstractmethod
    def prior_sample(
        self, like: State, *, generator: GeneratorLike = None, space: DataSpace | None = None, cond: Cond | None = None, t: float = 1.0
    ) -> State:
        """Draw from the marginal at time ``t`` (the prior at ``t = 1``) shaped like ``like``."""

    @property
    def t_min(self) -> float:
        """Smallest time samplers step to before the final step to ``t = 0``."""
        return 0.0

    @property
    def t_max(self) -> float:
        """Largest time samplers start from."""
        return 1.0

    def config(self) -> dict[str, Any]:
        """Parameters that rebuild this process through ``polydiff.processes.get(name, **config)``."""
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({params})"
