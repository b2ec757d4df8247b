"""Framework overhead: time per training step of ``polydiff.training.train`` vs a bare PyTorch loop.

Both train the same model (the toy recipe's MLP Denoiser, widened so a step is >= 10 ms on a CPU) on
the same data with the same per-step work:

* a ``DataLoader`` over the same dataset (shuffled, ``drop_last``) with the default collate;
* ``recipe.loss(model, batch, cfg, generator)`` (a Denoiser loss with a dedicated generator);
* ``backward``, ``clip_grad_norm_``, AdamW, the warm-up + cosine ``LambdaLR``, EMA through
  ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``.

What the engine does in addition (that is the overhead measured): its resumable sampler, the
non-finite guard (the loss and the gradient norm are read on the host every step), per-step
bookkeeping, a metrics-log row and progress bookkeeping every ``log_every`` steps. The bare loop reads
the loss on the host only every ``log_every`` steps. Checkpoints are excluded: the engine writes one
only after the timed window (``checkpoint_every`` is larger than the run).

Engine step time: from the engine's own ``metrics.csv`` (cumulative ``seconds`` at the first logged
step after warm-up and at the last step). Bare step time: ``perf_counter`` over the same steps after
the same warm-up. On CPU also CPU time per step (``process_time``; for the engine the difference of a
``warmup + steps`` and a ``warmup`` run), which other load on a shared machine does not inflate.
Runs alternate engine/bare ``--repeats`` times; medians are reported.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/framework_overhead.py --device cpu \
        --out benchmarks/results/framework_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from polydiff.recipes import RunDir
from polydiff.testing.toy_recipe import ToyRecipe, toy_config
from polydiff.training import build_optimizer, build_scheduler, train
from polydiff.training.metrics_log import read_metrics


def _cfg(args: argparse.Namespace):
    total = args.warmup + args.steps
    return toy_config(
        train={"steps": total, "batch_size": args.batch_size, "lr": 1e-3, "warmup_steps": 10, "log_every": args.log_every,
               "checkpoint_every": 10 * total, "bf16": args.bf16, "compile": False, "seed": 0},
        model={"width": args.width, "depth": args.depth},
        data={"n_train": args.n_train, "n_val": 0},
    )


def _engine_run(args: argparse.Namespace, device: str, max_steps: int) -> tuple[dict[int, float], float]:
    """Train ``max_steps`` steps; return the log's ``{step: wall seconds}`` and the CPU seconds of the call."""
    recipe, cfg = ToyRecipe(), _cfg(args)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        c0 = time.process_time()
        train(recipe, cfg, run, device=device, progress=False, max_steps=max_steps)
        cpu = time.process_time() - c0
        rows = {int(r["step"]): r["seconds"] for r in read_metrics(run.metrics_log) if "seconds" in r}
    return rows, cpu


def engine_step_seconds(args: argparse.Namespace, device: str) -> tuple[float, float | None]:
    """Wall seconds per step (from the engine's log) and, on CPU, CPU seconds per step.

    CPU seconds per step: the difference of the CPU time of a ``warmup + steps`` run and a ``warmup``
    run (same set-up and final checkpoint), divided by ``steps``; it is insensitive to other load.
    """
    rows, cpu_long = _engine_run(args, device, args.warmup + args.steps)
    first = min(s for s in rows if s >= args.warmup)
    last = max(rows)
    wall = (rows[last] - rows[first]) / (last - first)
    if device != "cpu":
        return wall, None
    _, cpu_short = _engine_run(args, device, args.warmup)
    return wall, (cpu_long - cpu_short) / args.steps


def bare_step_seconds(args: argparse.Namespace, device: str) -> tuple[float, float]:
    """Wall and CPU seconds per step over the timed steps."""
    recipe, cfg = ToyRecipe(), _cfg(args)
    tc = cfg.train
    dev = torch.device(device)
    torch.manual_seed(tc.seed)
    bundle = recipe.datasets(cfg, RunDir(tempfile.gettempdir()))
    model = recipe.build_model(cfg, RunDir(tempfile.gettempdir())).to(dev)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=False)
    opt = build_optimizer(model, tc)
    sched = build_scheduler(opt, tc)
    # pinned host memory on CUDA, as the engine uses, so the copy does not wait for the device
    loader = DataLoader(bundle.train, batch_size=tc.batch_size, shuffle=True, drop_last=True,
                        pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(tc.seed))
    gen = torch.Generator(dev).manual_seed(tc.seed)
    use_bf16 = dev.type == "cuda" and tc.bf16
    step, t0, c0 = 0, None, 0.0
    while step < args.warmup + args.steps:
        for batch in loader:
            if step == args.warmup:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
            if step == args.warmup + args.steps:
                break
            batch = batch.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                loss = recipe.loss(model, batch, cfg, gen)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            ema.update_parameters(model)
            step += 1
            if step % tc.log_every == 0:
                float(loss.detach())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    assert t0 is not None
    return (time.perf_counter() - t0) / args.steps, (time.process_time() - c0) / args.steps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-train", type=int, default=65536)
    p.add_argument("--steps", type=int, default=100, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only) in both loops")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.warmup % args.log_every or args.steps % args.log_every:
        p.error("--warmup and --steps must be multiples of --log-every (the engine's timing reads its log rows)")
    engine, bare, engine_cpu, bare_cpu = [], [], [], []
    _engine_run(args, args.device, 2)  # pay one-time costs (lazy imports such as torch._dynamo) before timing
    for _ in range(args.repeats):
        wall, cpu = engine_step_seconds(args, args.device)
        engine.append(wall)
        engine_cpu.append(cpu)
        wall, cpu = bare_step_seconds(args, args.device)
        bare.append(wall)
        bare_cpu.append(cpu)
    e, b = statistics.median(engine), statistics.median(bare)
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(torch.device(args.device)),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "engine_step_ms": [1e3 * x for x in engine],
        "bare_step_ms": [1e3 * x for x in bare],
        "engine_median_ms": 1e3 * e,
        "bare_median_ms": 1e3 * b,
        "overhead_pct": 100.0 * (e / b - 1.0),
        # the fastest repeat of each is less sensitive to other load on the machine
        "overhead_pct_of_min": 100.0 * (min(engine) / min(bare) - 1.0),
    }
    if args.device == "cpu":  # CPU time per step: the work each loop does, whatever else runs on the machine
        ec, bc = statistics.median(engine_cpu), statistics.median(bare_cpu)
        result.update({
            "engine_cpu_step_ms": [1e3 * x for x in engine_cpu],
            "bare_cpu_step_ms": [1e3 * x for x in bare_cpu],
            "engine_cpu_median_ms": 1e3 * ec,
            "bare_cpu_median_ms": 1e3 * bc,
            "cpu_overhead_pct": 100.0 * (ec / bc - 1.0),
        })
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
