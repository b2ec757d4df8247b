"""Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise.

Training (:class:`Progress`, driven by the engine), and any other long work (:class:`WorkProgress`):
the CLI wraps ``recipe.sample`` and ``recipe.evaluate`` in :func:`reporting`, and a recipe reports
into it with :func:`sampling_callback` (passed as ``callback=`` to :func:`polydiff.sample`) and
:func:`track` (around an evaluation loop). Outside the CLI both are silent no-ops.

Each update shows the step, a bar, the loss, the learning rate, steps/s, samples/s and the ETA.
On a terminal the line is redrawn in place (``\\r``); in logs and CI (not a TTY) every update is
its own line, so nothing is lost.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

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




# -- progress of other long work: sampling and evaluation ----------------------------------------------
class WorkProgress:
    """Progress of work counted in units (sampler steps, batches): ``label [####....] 12/64 detail``.

    On a terminal the line is redrawn in place (at most every 0.1 s); in logs every tenth of the way
    (and the end) is its own line. ``total=None`` shows a count without a bar.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool = True, stream: TextIO | None = None,
                 header: str | None = None) -> None:
        self.label = label
        self.pending = header  # shown before the first report, so work that fails at once prints only its error
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = time.perf_counter()
        self._last_draw = -1.0
        self._last_decile = -1
        self._open_line = False

    def update(self, done: int, total: int | None = None, detail: str = "") -> None:
        """Report that ``done`` units (of ``total``, when known) are finished."""
        if not self.enabled:
            return
        self.flush_header()
        if total is not None:
            self.total = total
        now = time.perf_counter()
        elapsed = now - self._start
        finished = self.total is not None and done >= self.total
        if self.total:
            frac = done / self.total
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = format_eta((self.total - done) / rate) if rate > 0 else "?"
            line = f"{self.label}: {done}/{self.total}{(' ' + detail) if detail else ''}  ETA {eta}"
            shown = f"{bar(frac)} {line}"
            decile = int(frac * 10)
        else:
            shown = f"{self.label}: {done}{(' ' + detail) if detail else ''}  {format_eta(elapsed)}"
            decile = done
        if self.in_place:
            if not finished and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self.stream.write(f"\r{shown}\033[K" + ("\n" if finished else ""))
            self.stream.flush()
            self._open_line = not finished
        elif decile != self._last_decile or finished:
            self._last_decile = decile
            print(shown, file=self.stream, flush=True)

    def flush_header(self) -> None:
        """Print the pending header line (if any) now."""
        if self.enabled and self.pending is not None:
            header, self.pending = self.pending, None
            print(header, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.flush_header()
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


_current: ContextVar[WorkProgress | None] = ContextVar("polydiff_progress", default=None)


@contextmanager
def reporting(label: str, *, enabled: bool = True, stream: TextIO | None = None,
              header: str | None = None) -> Iterator[WorkProgress]:
    """Make a :class:`WorkProgress` the current reporter while the block runs (the CLI wraps
    ``recipe.sample`` and ``recipe.evaluate`` in it); :func:`sampling_callback` and :func:`track` report to it.

    ``header`` (what the work is) is printed before the first progress report, or when the block
    ends normally — never when it fails before reporting, so a bad option is one error line.
    """
    reporter = WorkProgress(label, enabled=enabled, stream=stream, header=header)
    token = _current.set(reporter)
    try:
        yield reporter
        reporter.flush_header()
    finally:
        _current.reset(token)
        reporter.close()


def current_reporter() -> WorkProgress | None:
    """The reporter set by :func:`reporting`, or ``None`` (outside the CLI: nothing is shown)."""
    return _current.get()


def sampling_callback(*, calls: int | None = None, label: str | None = None) -> Callable[[Any], None] | None:
    """A ``callback`` for :func:`polydiff.sample` that shows sampler steps on the current reporter.

    Recipes pass it through: ``polydiff.sample(model, ..., callback=sampling_callback(calls=n_batches))``.
    ``calls`` is how many ``polydiff.sample`` calls (batches) the recipe will make with this
    callback, so the bar spans them all. Returns ``None`` when no reporter is active (a plain API
    call), which ``polydiff.sample`` treats as no callback.
    """
    reporter = _current.get()
    if reporter is None or not reporter.enabled:
        return None
    state = {"call": 0}

    def callback(info: Any) -> None:
        step, n_steps = int(info.step), int(info.n_steps)
        if step == 0:
            state["call"] += 1
        call = max(1, state["call"])
        if label is not None:
            reporter.label = label
        if calls:
            reporter.update((call - 1) * n_steps + step + 1, calls * n_steps, detail=f"steps (batch {call}/{calls})")
        else:
            reporter.update(step + 1, n_steps, detail="steps" + (f" (batch {call})" if call > 1 else ""))

    return callback


def track(iterable: Iterable[T], *, total: int | None = None, label: str | None = None) -> Iterator[T]:
    """Yield from ``iterable``, reporting each item done on the current reporter (evaluation loops).

    ``for batch in track(loader, total=len(loader), label="perplexity"): ...``. Outside a
    :func:`reporting` block it is a plain pass-through.
    """
    reporter = _current.get()
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if reporter is None or not reporter.enabled:
        yield from iterable
        return
    if label is not None:
        reporter.label = label
    reporter._start, reporter._last_decile = time.perf_counter(), -1
    done = 0
    for item in iterable:
        yield item
        done += 1
        reporter.update(done, total)


__all__ = ["Progress", "WorkProgress", "bar", "current_reporter", "format_eta", "reporting", "sampling_callback", "track"]
