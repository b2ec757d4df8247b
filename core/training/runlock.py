"""A run directory's lock: one training process at a time writes into ``RUN``.

``RUN/.lock`` holds ``{"pid", "host", "started"}`` as JSON, and its holder keeps an exclusive
``flock`` on it for as long as it trains (where the platform has ``fcntl``; the kernel drops the
flock when the process dies, however it dies). A second process that wants to train into the same
run gets a :class:`RunLockedError` naming the process that holds it. Taking over a stale lock (its
process no longer runs on this host) happens under that flock, so two processes that find the same
stale lock cannot both take it (without the flock, both could unlink it and each create its own).
A lock from another host cannot be checked; the message says which file to delete if that process
is gone. A lock file naming a live process on this host is honoured even without a flock (a holder
that does not flock). The lock is re-entrant within one process (the CLI takes it before writing
``config.toml``, the engine again while it trains).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ..errors import UserInputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: exclusive creation alone
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}  # lock path -> nesting depth in this process
_fds: dict[Path, int] = {}  # lock path -> the open descriptor carrying this process's flock


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


def _parse(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw.decode())
        return data if isinstance(data, dict) else {}
    except (UnicodeDecodeError, ValueError):
        return {}


def _read(path: Path) -> dict[str, object] | None:
    """The lock file's JSON (``{}`` when empty, being written or garbage; ``None`` when there is no file)."""
    try:
        return _parse(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError:
        return {}


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
            if fcntl is None:  # pragma: no cover
                fd = self._create_exclusive(host)
            else:
                fd = self._open_and_flock(host)
            if fd is None:
                continue  # the file changed under us (released or replaced): try again
            os.ftruncate(fd, 0)
            os.pwrite(fd, (body + "\n").encode(), 0)
            _held[self.path] = 1
            _fds[self.path] = fd
            return
        raise RunLockedError(f"could not lock the run directory {str(self.path.parent)!r} ({str(self.path)!r} keeps changing)")

    def _refuse(self, holder: dict[str, object]) -> RunLockedError:
        pid, where = holder.get("pid"), holder.get("host")
        who = f"process {pid} on {where}" if isinstance(pid, int) else "another process"
        return RunLockedError(
            f"run directory {str(self.path.parent)!r} is in use: {who} is training into it "
            f"(lock file {str(self.path)!r}); wait for it to finish, or delete the lock file if that process is gone")

    @staticmethod
    def _stale(holder: dict[str, object], host: str) -> bool:
        """The holder named in the file is gone: its pid no longer runs on this host (or is this process's own)."""
        pid = holder.get("pid")
        return isinstance(pid, int) and holder.get("host") == host and (pid == os.getpid() or not _pid_alive(pid))

    def _open_and_flock(self, host: str) -> int | None:
        """The descriptor holding the flock on the current lock file, or ``None`` to retry; raises when held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._refuse(_read(self.path) or {}) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder released (unlinked) it between our open and our flock
                os.close(fd)
                return None
            raw = os.pread(fd, 4096, 0)
            holder = _parse(raw)
            if holder and not self._stale(holder, host) and holder.get("pid") is not None:
                raise self._refuse(holder)  # a live holder that does not flock, or one on another host
            return fd  # empty (just created), garbage, or stale: ours, under the flock
        except BaseException:
            if fd not in _fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise

    def _create_exclusive(self, host: str) -> int | None:  # pragma: no cover - platforms without fcntl
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read(self.path)
            if holder is None:
                return None
            if self._stale(holder, host):
                self.path.unlink(missing_ok=True)
                return None
            raise self._refuse(holder) from None

    def release(self) -> None:
        depth = _held.get(self.path, 0)
        if depth > 1:
            _held[self.path] = depth - 1
            return
        _held.pop(self.path, None)
        if depth == 1:
            holder = _read(self.path)
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)  # under our flock: nobody else can be taking it over
            fd = _fds.pop(self.path, None)
            if fd is not None:
                os.close(fd)  # drops the flock
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
