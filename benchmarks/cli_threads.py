"""CPU threads under contention: ``polydiff train`` / ``sample`` idle vs. next to one CPU-bound process.

For each thread setting, the same short text/mdlm run is timed with the machine as it is ("idle")
and with one extra busy-loop process (``python -c 'while True: pass'``) started just before and
killed just after. Times are the ones the CLI prints ("trained 30 steps in X s", "wrote N file(s)
... in X s"), which leave out the Python/torch start-up. The ratio contended/idle is the number to
read: it is taken within one script run, so slow drift from other load on a shared machine cancels
roughly.

    .venv/bin/python benchmarks/cli_threads.py [--steps 30] [--repeats 1] [--out benchmarks/results/cli_threads.md]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLYDIFF = [sys.executable, "-m", "polydiff.cli"]

SETTINGS = [
    # (label, extra CLI args, extra environment)
    # an empty OMP_WAIT_POLICY keeps polydiff from setting PASSIVE: OpenMP's own default (spin, then sleep)
    ("--threads 2, OpenMP's default waiting (torch's defaults on 2 cores)", ["--threads", "2"], {"OMP_WAIT_POLICY": ""}),
    ("--threads 2, OMP_WAIT_POLICY=PASSIVE (polydiff's default)", ["--threads", "2"], {}),
    ("no flag (polydiff's defaults: cores - 1 threads, PASSIVE)", [], {}),
]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLYDIFF_THREADS",
                                                             "OMP_WAIT_POLICY"}}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds the CLI reports, wall seconds of the process, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(POLYDIFF + args, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{p.stderr[-2000:]}")
    m = re.search(r" in ([0-9.]+) s", p.stdout)
    return (float(m.group(1)) if m else float("nan")), wall, p.stdout


class Spinner:
    """One CPU-bound competitor for the duration of a ``with`` block."""

    def __enter__(self) -> "Spinner":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def _busy_processes(threshold: float = 20.0) -> str:
    """Other processes using more than ``threshold`` % CPU right now (``top``, a 1 s sample)."""
    try:
        out = subprocess.run(["top", "-b", "-n", "2", "-d", "1", "-o", "%CPU"], capture_output=True, text=True).stdout
    except OSError:  # pragma: no cover - no top
        return "unknown (no top)"
    last = out.split("PID USER")[-1].splitlines()[1:]
    busy = []
    for line in last:
        f = line.split()
        if len(f) >= 12 and int(f[0]) != os.getpid():
            try:
                cpu = float(f[8].replace(",", "."))
            except ValueError:
                continue
            if cpu >= threshold:
                busy.append(f"{f[11]} {cpu:.0f}%")
    return ", ".join(busy) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="text/mdlm")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--num", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_threads.md")
    args = ap.parse_args()
    load_before = os.getloadavg()
    busy_before = _busy_processes()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        _run(["train", args.recipe, "--preset", "tiny", "--max-steps", str(args.steps), "--out", str(base),
              "--device", "cpu", "--no-progress", "--threads", "1"], _env({}))
        for label, flags, extra in SETTINGS:
            env = _env(extra)
            res: dict[str, list[float]] = {}
            for rep in range(args.repeats):
                for cond in ("idle", "contended"):
                    run = Path(tmp) / f"r-{len(rows)}-{rep}-{cond}"
                    train_args = ["train", args.recipe, "--preset", "tiny", "--max-steps", str(args.steps), "--out",
                                  str(run), "--device", "cpu", "--no-progress", *flags]
                    sample_args = ["sample", str(base), "--out", str(run) + "-s", "--num", str(args.num), "--steps",
                                   str(args.sample_steps), "--device", "cpu", "--no-progress", *flags]
                    if cond == "contended":
                        with Spinner():
                            tr, sa = _run(train_args, env)[0], _run(sample_args, env)[0]
                    else:
                        tr, sa = _run(train_args, env)[0], _run(sample_args, env)[0]
                    res.setdefault(f"train-{cond}", []).append(tr)
                    res.setdefault(f"sample-{cond}", []).append(sa)
                    print(f"{label} | {cond}: train {tr:.2f} s, sample {sa:.2f} s", flush=True)
            rows.append((label, {k: min(v) for k, v in res.items()}))
    load_after = os.getloadavg()
    busy_after = _busy_processes()
    lines = [
        "# CLI threads: idle vs. one competing CPU-bound process", "",
        f"Command: `.venv/bin/python benchmarks/cli_threads.py --steps {args.steps} --repeats {args.repeats}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).", "",
        f"Each cell: seconds the CLI reports for `polydiff train {args.recipe} --preset tiny --max-steps {args.steps} "
        f"--device cpu` and for `polydiff sample RUN --num {args.num} --steps {args.sample_steps} --device cpu` "
        f"(best of {args.repeats}); *contended* runs next to one `python -c 'while True: pass'`.", "",
        f"Machine: {os.cpu_count()} CPU cores, shared with other jobs (load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after), so *idle* means \"no extra competitor\", not an "
        "idle machine.", "",
        f"Other processes above 20 % CPU (top) at the start: {busy_before}; at the end: {busy_after}.", "",
        "| setting | train idle (s) | train contended (s) | ratio | sample idle (s) | sample contended (s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['train-idle']:.2f} | {r['train-contended']:.2f} | "
                     f"{r['train-contended'] / r['train-idle']:.1f}x | {r['sample-idle']:.2f} | "
                     f"{r['sample-contended']:.2f} | {r['sample-contended'] / r['sample-idle']:.1f}x |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
