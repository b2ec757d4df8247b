"""Two processes that find the same stale lock cannot both take it over (the takeover happens under a flock).

The contenders check the stale holder slowly (0.3 s), so without the flock several of them would each unlink
the stale file and create their own (measured: the exclusive-create-only lock it replaces let all 6 of 6 through).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polydiff.training.runlock import RunLock, RunLockedError

WORKERS = 6


def _contender(run: str, start, attempted, results) -> None:  # type: ignore[no-untyped-def]
    from polydiff.training import runlock

    alive = runlock._pid_alive

    def slow_alive(pid: int) -> bool:  # widen the window between "this lock is stale" and the takeover
        time.sleep(0.3)
        return alive(pid)

    runlock._pid_alive = slow_alive
    lock = RunLock(run)
    start.wait()
    try:
        lock.acquire()
        ok = True
    except RunLockedError:
        ok = False
    results.put(ok)
    attempted.wait()  # every contender has tried before the winner lets go
    if ok:
        lock.release()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method")
@pytest.mark.parametrize("round_", range(3))
def test_exactly_one_process_takes_over_a_stale_lock(tmp_path: Path, round_: int) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier"}))
    ctx = mp.get_context("fork")
    start, attempted, results = ctx.Barrier(WORKERS), ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(str(run), start, attempted, results)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(outcomes) == 1, outcomes
    assert not (run / ".lock").exists()  # released by the winner


def test_a_lock_held_by_this_process_refuses_another_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run):
        code = ("from polydiff.training.runlock import RunLock, RunLockedError\n"
                f"try:\n    RunLock({str(run)!r}).acquire()\nexcept RunLockedError as e:\n    print('refused', e)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("refused") and f"process {os.getpid()}" in out
