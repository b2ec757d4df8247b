"""A run directory's lock: one training process at a time writes into ``RUN``.

``RUN/.lock`` is created atomically (``O_CREAT | O_EXCL``) and holds ``{"pid", "host", "started"}``
as JSON. A second process that wants to train into the same run gets a :class:`RunLockedError`
naming the process that holds it. A lock left by a process that no longer runs on this host (killed,
crashed) is stale and is taken over. A lock from another host cannot be checked; the message says
which file to delete if that process is gone. The lock is re-entrant within one process (the CLI
takes it before writing ``config.toml``, the engine again while it trains).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ..errors import UserInputError

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}  # lock path -> nesting depth in this process


class RunLockedError(UserInputError):
    """Another live process holds the run directory's lock."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:  # pragma: no cover
        return False
    return True


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or garbage: treated as held by an unknown process


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock`` for the duration (re-entrant per process)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = (Path(run_dir) / LOCK_NAME).absolute()
        self._created_dir = False

    def acquire(self) -> None:
        if _held.get(self.path, 0) > 0:
            _held[self.path] += 1
            return
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._created_dir = True  # removed again on release if nothing else was written into it
        host = socket.gethostname()
        body = json.dumps({"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:
                    continue  # released meanwhile: try again
                pid, where = holder.get("pid"), holder.get("host")
                if isinstance(pid, int) and where == host and (pid == os.getpid() or not _pid_alive(pid)):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone (or was this one, forked away)
                    continue
                who = f"process {pid} on {where}" if isinstance(pid, int) else "another process"
                raise RunLockedError(
                    f"run directory {str(self.path.parent)!r} is in use: {who} is training into it "
                    f"(lock file {str(self.path)!r}); wait for it to finish, or delete the lock file if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(body + "\n")
            _held[self.path] = 1
            return
        raise RunLockedError(f"could not lock the run directory {str(self.path.parent)!r} ({str(self.path)!r} keeps changing)")

    def release(self) -> None:
        depth = _held.get(self.path, 0)
        if depth > 1:
            _held[self.path] = depth - 1
            return
        _held.pop(self.path, None)
        if depth == 1:
            holder = _read(self.path)
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            if self._created_dir:
                try:
                    self.path.parent.rmdir()  # only when empty: a run refused before it wrote anything
                except OSError:
                    pass

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]
