"""The training loop: ``train(recipe, cfg, run)`` and ``load_model(recipe, cfg, run)``.

One optimizer step = ``grad_accum`` micro-batches of ``batch_size`` on each of ``world_size`` ranks
(global batch ``batch_size x grad_accum x world_size``). AdamW with warm-up + cosine decay, gradient
clipping, EMA, bf16 autocast on CUDA, optional ``torch.compile``, a non-finite guard (a step whose
loss or gradient norm is NaN/Inf makes no update; ``max_bad_steps`` in a row stop the run), a
metrics log, periodic validation with the EMA model, and atomic checkpoints that resume exactly.

Randomness: the data order comes from :class:`~polydiff.training.data.ShardedBatches` (seeded by
``train.seed``); the loss draws from a dedicated generator per rank, seeded from ``(seed, rank)``, or
(with ``train.per_sample_generators``) from one generator per sample seeded from ``(seed, step,
dataset index)`` so the draws do not depend on how a batch is split across ranks or micro-batches.
Every generator state is checkpointed.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import NonFiniteLossError, CheckpointError, ConfigError
from ..recipes import DataBundle, Recipe, RunDir, TrainConfig
from . import distributed
from .checkpoint import load_latest
from .data import DataPosition, OneAhead, ShardedBatches, batch_size_of, to_device
from .ema import EMA
from .metrics_log import MetricsLog
from .optim import build_optimizer, build_scheduler
from ..progress import Progress
from .runlock import RunLock
from ..seeding import mix_seed
from .train_state import restore_train_state, save_train_checkpoint
from .validation import validation_loss




@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        steps: optimizer steps taken in total (including those before a resume).
        final_loss: training loss of the last finite step (NaN if there was none).
        seconds: wall-clock seconds of this call.
        checkpoint: the latest checkpoint directory (``None`` if none was written).
        bad_steps: steps skipped because the loss or gradient norm was not finite (whole run).
        start_step: the step this call started from (0, or the resumed checkpoint's step).
    """

    steps: int
    final_loss: float
    seconds: float
    checkpoint: Path | None
    bad_steps: int
    start_step: int = 0

    @property
    def steps_this_call(self) -> int:
        """Steps trained by this call (``steps - start_step``)."""
        return self.steps - self.start_step


class _LossForward(nn.Module):
    """Routes ``recipe.loss(model, batch, cfg, generator)`` through ``forward`` so DDP sees it (and syncs
    gradients); the recipe receives the bare model and the run's config."""

    def __init__(self, recipe: Recipe, model: nn.Module, cfg: Any) -> None:
        super().__init__()
        self.model = model
        self._recipe = recipe
        self._cfg = cfg

    def forward(self, batch: Any, generator: Any) -> torch.Tensor:
        return self._recipe.loss(self.model, batch, self._cfg, generator)


def _check(tc: Any) -> TrainConfig:
    if not isinstance(tc, TrainConfig):
        raise ConfigError(f"cfg.train must be a polydiff.recipes.TrainConfig, got {type(tc).__name__}")
    for name in ("steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_checkpoints", "max_bad_steps"):
        if int(getattr(tc, name)) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(tc, name)}")
    if tc.warmup_steps < 0 or tc.eval_every < 0 or tc.num_workers < 0:
        raise ConfigError("train.warmup_steps, train.eval_every and train.num_workers must be >= 0")
    if not 0.0 <= tc.min_lr_ratio <= 1.0:
        raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {tc.min_lr_ratio}")
    if not 0.0 <= tc.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {tc.ema_decay}")
    if not (math.isfinite(tc.lr) and tc.lr > 0):
        raise ConfigError(f"train.lr must be a finite number > 0, got {tc.lr}")
    if not (math.isfinite(tc.weight_decay) and tc.weight_decay >= 0):
        raise ConfigError(f"train.weight_decay must be a finite number >= 0, got {tc.weight_decay}")
    if not (math.isfinite(tc.grad_clip) and tc.grad_clip >= 0):
        raise ConfigError(f"train.grad_clip must be a finite number >= 0 (0 turns clipping off), got {tc.grad_clip}")
    if len(tc.betas) != 2 or not all(0.0 <= b < 1.0 for b in tc.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {tc.betas}")
    return tc


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def train(
    recipe: Recipe,
    cfg: Any,
    run: RunDir | str | Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``recipe``'s model with ``cfg`` into the run directory ``run``.

    Calls ``recipe.setup`` (rank 0), ``recipe.datasets`` and ``recipe.build_model``, then trains to
    ``cfg.train.steps`` optimizer steps, or to step ``max_steps`` when given (the learning-rate
    schedule spans ``cfg.train.steps`` and stays at its final value past it, so ``max_steps`` can
    also continue a finished run). Works single-process and under ``torchrun`` (DDP; rank 0 alone
    writes logs and checkpoints). Rank 0 holds the run directory's lock (``RUN/.lock``) meanwhile.

    Args:
        recipe: the recipe. cfg: its config (with ``cfg.train`` a :class:`TrainConfig`).
        run: the run directory. device: ``cpu`` or ``cuda`` (``cuda:LOCAL_RANK`` under torchrun).
        resume: continue exactly from ``checkpoints/latest`` (``CheckpointError`` if there is none).
        max_steps: train until this many steps (counted from the start of the run) are done.
        progress: print a progress line to stderr every ``train.log_every`` steps (more often in
            short runs: about ten lines per call).

    Side effects: seeds Python's ``random``, numpy's and torch's global generators from ``train.seed``
    (a resumed run restores them from the checkpoint); ``train.deterministic`` turns on
    ``torch.use_deterministic_algorithms`` for the duration of the call.

    Raises:
        ConfigError: bad ``train`` settings, or a fresh start in a run that already has checkpoints.
        CheckpointError: ``resume`` without a usable checkpoint.
        RunLockedError: another process is training into ``run``.
        NonFiniteLossError: ``train.max_bad_steps`` consecutive non-finite steps.
    """
    tc = _check(getattr(cfg, "train", None))
    run = run if isinstance(run, RunDir) else RunDir(run)
    if max_steps is not None and int(max_steps) < 1:
        raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
    info = distributed.setup(device)
    prev_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with RunLock(run.path) if info.is_main else nullcontext():
            return _train(recipe, cfg, tc, run, info, resume=resume, max_steps=max_steps, progress=progress)
    finally:
        torch.use_deterministic_algorithms(prev_deterministic)
        distributed.teardown(info)


def _train(recipe: Recipe, cfg: Any, tc: TrainConfig, run: RunDir, info: distributed.DistInfo, *,
           resume: bool, max_steps: int | None, progress: bool) -> TrainResult:
    start_time = time.perf_counter()
    dev = info.device
    total = tc.steps if max_steps is None else int(max_steps)
    if info.is_main:
        run.ensure()
        if not resume and (run.checkpoints / "latest").exists():
            raise ConfigError(f"run directory {run.path} already has checkpoints ({run.checkpoints / 'latest'}); "
                              "resume it (--resume) or choose a new --out")
        if not run.config_path.exists():  # the CLI writes it first; API callers get the same record
            from ..config import save_config

            save_config(cfg, run.config_path, header={"recipe": recipe.name})
    distributed.barrier(info)
    if tc.deterministic:
        if dev.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    _seed_everything(tc.seed)
    if info.is_main:
        recipe.setup(cfg, run)
    distributed.barrier(info)
    bundle: DataBundle = recipe.datasets(cfg, run)
    torch.manual_seed(tc.seed)  # model initialisation does not depend on what datasets() drew
    model = recipe.build_model(cfg, run).to(dev)
    ema = EMA(model, tc.ema_decay)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc)
    data = ShardedBatches(bundle.train, batch_size=tc.batch_size, seed=tc.seed, world_size=info.world_size, rank=info.rank,
                          collate=bundle.collate, num_workers=tc.num_workers, pin_memory=dev.type == "cuda")
    loss_gen = torch.Generator(dev).manual_seed(mix_seed(tc.seed, info.rank))
    step, pos, prior_seconds, bad_total = 0, DataPosition(), 0.0, 0
    ckpt_path: Path | None = None
    if resume:
        ck = load_latest(run.checkpoints, device=dev)
        step, pos, prior_seconds, bad_total = restore_train_state(ck, model, ema, optimizer, scheduler, loss_gen, info)
        ckpt_path = ck.path
    start_step = step
    prog = Progress(total, enabled=progress and info.is_main)
    # the progress line: every train.log_every steps, but about ten times in a short run
    show_every = max(1, min(tc.log_every, math.ceil((total - step) / 10)))
    metrics = MetricsLog(run.metrics_log, resume_step=step if resume else None,
                         tensorboard_dir=run.path / "tensorboard") if info.is_main else None
    if tc.compile:
        model.compile()
    loss_module: nn.Module = _LossForward(recipe, model, cfg)
    if info.distributed:
        loss_module = DistributedDataParallel(loss_module, device_ids=[dev.index] if dev.type == "cuda" else None)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (dev.type == "cuda" and tc.bf16) else nullcontext
    n_params = sum(p.numel() for p in model.parameters())
    prog.message(f"training {recipe.name}: {n_params:,} parameters, global batch "
                 f"{tc.batch_size * tc.grad_accum * info.world_size}, {info.world_size} process(es) on {dev.type}"
                 f"{f' ({torch.get_num_threads()} CPU threads)' if dev.type == 'cpu' else ''}, "
                 f"steps {step}->{total}")

    batches = OneAhead(data.iterate(pos))
    model.train()
    last_loss, bad_run = math.nan, 0
    window_t, window_steps, window_samples = time.perf_counter(), 0, 0
    shown_t, shown_steps, shown_samples = window_t, 0, 0
    last_saved = step
    try:
        while step < total:
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=dev, dtype=torch.float32)
            n_samples = 0
            for micro in range(tc.grad_accum):
                batch, ids, pos = batches.take()
                batch = to_device(batch, dev)
                gen = ([torch.Generator(dev).manual_seed(mix_seed(tc.seed, step, i)) for i in ids]
                       if tc.per_sample_generators else loss_gen)
                last_micro = micro == tc.grad_accum - 1
                sync = loss_module.no_sync() if info.distributed and not last_micro else nullcontext()  # type: ignore[operator]
                with sync:
                    with autocast():
                        loss = loss_module(batch, gen)
                    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                        raise TypeError(f"{type(recipe).__name__}.loss must return a scalar tensor, got "
                                        f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}")
                    (loss.float() / tc.grad_accum).backward()
                loss_sum += loss.detach().float()
                n_samples += batch_size_of(batch, tc.batch_size)
            if (step + 1) % tc.checkpoint_every != 0 and step + 1 < total:
                # collate the next batch on the CPU while the device finishes this step; not before a
                # checkpoint, whose RNG snapshot must precede the next batch (datasets may draw random numbers)
                batches.fill()
            loss_v = float(distributed.mean_across_ranks(info, loss_sum / tc.grad_accum))
            max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            lr = float(optimizer.param_groups[0]["lr"])
            if math.isfinite(loss_v) and math.isfinite(grad_norm):
                optimizer.step()
                ema.update(model)
                bad_run, last_loss = 0, loss_v
                scheduler.step()
            else:
                optimizer.zero_grad(set_to_none=True)
                bad_run += 1
                bad_total += 1
                prog.message(f"step {step + 1}: non-finite loss ({loss_v}) or gradient norm ({grad_norm}); step skipped")
                if bad_run >= tc.max_bad_steps:
                    raise NonFiniteLossError(
                        f"training stopped at step {step + 1}: {bad_run} consecutive steps had a non-finite loss or "
                        f"gradient norm (train.max_bad_steps={tc.max_bad_steps}); last loss={loss_v}, grad norm={grad_norm}. "
                        "Lower train.lr, check the data for NaN/Inf, or raise train.grad_clip"
                    )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
                    scheduler.step()
            step += 1
            window_steps += 1
            window_samples += n_samples * info.world_size
            shown_steps += 1
            shown_samples += n_samples * info.world_size
            if step % tc.log_every == 0 or step == total:
                now = time.perf_counter()
                dt = max(now - window_t, 1e-12)
                if metrics is not None:
                    metrics.log({"step": step, "loss": loss_v, "lr": lr, "grad_norm": grad_norm,
                                 "seconds": prior_seconds + now - start_time, "samples_per_s": window_samples / dt})
                window_t, window_steps, window_samples = now, 0, 0
            if step % show_every == 0 or step == total:
                now = time.perf_counter()
                dt = max(now - shown_t, 1e-12)
                prog.update(step=step, loss=loss_v, lr=lr, steps_per_s=shown_steps / dt, samples_per_s=shown_samples / dt)
                shown_t, shown_steps, shown_samples = now, 0, 0
            if tc.eval_every > 0 and bundle.val is not None and step % tc.eval_every == 0:
                if info.is_main:
                    val = validation_loss(recipe, ema.module, bundle, cfg, dev, autocast)
                    assert metrics is not None
                    metrics.log({"step": step, "val_loss": val})
                    prog.message(f"step {step}: validation loss (EMA) {val:.4f}")
                distributed.barrier(info)
            if step % tc.checkpoint_every == 0 or step == total:
                seconds = prior_seconds + time.perf_counter() - start_time
                ckpt_path = save_train_checkpoint(run, tc, info, step, pos, seconds, bad_total, model, ema, optimizer, scheduler, loss_gen)
                last_saved = step
    finally:
        if metrics is not None:
            metrics.close()
    if step != last_saved:  # pragma: no cover - the loop always saves at step == total
        ckpt_path = save_train_checkpoint(run, tc, info, step, pos, prior_seconds, bad_total, model, ema, optimizer, scheduler, loss_gen)
    return TrainResult(steps=step, final_loss=last_loss, seconds=time.perf_counter() - start_time,
                       checkpoint=ckpt_path, bad_steps=bad_total, start_step=start_step)


def load_model(recipe: Recipe, cfg: Any, run: RunDir | str | Path, *, ema: bool = True,
               device: str | torch.device = "cpu") -> nn.Module:
    """The recipe's model with the weights of the latest checkpoint (EMA weights by default), in eval mode.

    Raises:
        CheckpointError: no checkpoint, a corrupt file, or weights that do not fit the model (names the file).
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    ck = load_latest(run.checkpoints, device="cpu", weights_only=True)
    name = "ema.safetensors" if ema else "model.safetensors"
    sd = ck.ema if ema else ck.model
    if sd is None:
        raise CheckpointError(f"checkpoint {ck.path / name} is missing (this checkpoint has no EMA weights)")
    model = recipe.build_model(cfg, run)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {ck.path / name} does not match the model of recipe "
                              f"{getattr(recipe, 'name', type(recipe).__name__)}: {str(e).splitlines()[0]} "
                              f"{' '.join(str(e).split())[:300]}") from None
    return model.to(device).eval()


__all__ = ["NonFiniteLossError", "TrainResult", "load_model", "mix_seed", "train", "validation_loss"]
