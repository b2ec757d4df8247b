"""Training progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise.

Each update shows the step, a bar, the loss, the learning rate, steps/s, samples/s and the ETA.
On a terminal the line is redrawn in place (``\\r``); in logs and CI (not a TTY) every update is
its own line, so nothing is lost.
"""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 24


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


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########...............]`` for ``fraction`` in ``[0, 1]``."""
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """Reports progress whenever the engine calls :meth:`update` (every ``log_every`` steps)."""

    def __init__(self, total_steps: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open_line = False

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
        if self.in_place:
            done = step >= self.total
            self.stream.write(f"\r{bar(step / max(1, self.total))} {line}\033[K" + ("\n" if done else ""))
            self.stream.flush()
            self._open_line = not done
        else:
            print(line, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._open_line:  # finish the bar's line before a message
            self.stream.write("\n")
            self._open_line = False
        print(text, file=self.stream, flush=True)


__all__ = ["Progress", "bar", "format_eta"]
