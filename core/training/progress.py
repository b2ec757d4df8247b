"""A plain-text progress line on stderr: step, loss, steps/s, samples/s and ETA."""

from __future__ import annotations

import sys
from typing import TextIO


def format_eta(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{sec:02d}s"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


class Progress:
    """Writes one line per call to :meth:`update` (the engine calls it every ``log_every`` steps)."""

    def __init__(self, total_steps: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr

    def update(self, *, step: int, loss: float, lr: float, steps_per_s: float, samples_per_s: float, extra: str = "") -> None:
        if not self.enabled:
            return
        eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
        eta_s = format_eta(eta) if eta != float("inf") else "?"
        width = len(str(self.total))
        line = (
            f"step {step:>{width}}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  "
            f"{steps_per_s:.2f} steps/s  {samples_per_s:.0f} samples/s  ETA {eta_s}{extra}"
        )
        print(line, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)


__all__ = ["Progress", "format_eta"]
