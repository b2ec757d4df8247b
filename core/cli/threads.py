"""CPU threads for torch: a default that does not collapse when the cores are shared, and ``--threads N``.

Why: torch's OpenMP pool uses one thread per core. When another CPU-bound process holds one of the
cores, every parallel region waits at its barrier for the thread that is not running, and a small
model's training step becomes 10-20x slower (see ``benchmarks/results/cli_threads.md``). One thread
fewer than the usable cores leaves room for the rest of the machine and costs little on small models.

Rules (:func:`choose_threads`):

- ``--threads N`` wins;
- else, when ``OMP_NUM_THREADS`` is set, torch already follows it and polydiff leaves it alone;
- else ``POLYDIFF_THREADS`` (a number) is used;
- else ``max(1, usable cores - 1)``, where usable cores is the process's CPU affinity.

``OMP_WAIT_POLICY`` cannot help here: OpenMP reads it when torch is first imported, before the CLI
runs; set it in the environment if you want it.
"""

from __future__ import annotations

import os

from ..errors import UserInputError

THREADS_ENV = "POLYDIFF_THREADS"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """``max(1, cores - 1)``: one core left for the rest of the machine."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores - 1)


def choose_threads(requested: int | None) -> int | None:
    """The intra-op thread count to set, or ``None`` to leave torch's own (``OMP_NUM_THREADS`` is set)."""
    if requested is not None:
        if requested < 1:
            raise UserInputError(f"--threads must be at least 1, got {requested}")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise UserInputError(f"{THREADS_ENV} must be a whole number >= 1, got {env!r}")
        return n
    return default_threads()


def apply_threads(requested: int | None) -> int:
    """Set torch's intra-op threads by :func:`choose_threads`; returns the number in effect."""
    import torch

    n = choose_threads(requested)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()


__all__ = ["THREADS_ENV", "apply_threads", "choose_threads", "default_threads", "usable_cores"]
