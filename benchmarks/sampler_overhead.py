"""Sampler overhead: ms per step of ``polydiff.sample`` against an equivalent bare PyTorch loop.

Both run the same network on the same vp-linear grid (the sampler's default kind) from the same start:

* ``near-free``: a network that costs one elementwise op (``0.1 * x``), batch 16, D = 2 — what is left is the
  sampler's own per-step cost;
* ``mlp``: a 2 x 256 SiLU MLP on ``[x, t]``, batch 4096, D = 2 — a network that dominates the step.

The network predicts ``eps`` (wrapped in a :class:`polydiff.Denoiser`). The bare loop is a dozen lines of
plain torch per sampler: the schedule's ``alpha``, ``sigma`` and ``lambda = log(alpha / sigma)`` of the whole
grid precomputed as Python floats, per-sample times precomputed, per step one network call, the eps -> x0
conversion and the update (ddim: ``x = (sigma_s / sigma_t) x + alpha_s (1 - e^{lambda_t - lambda_s}) x0``;
euler is the same step; dpm++2m adds the multistep correction), the step to 0 returning x0. The bare loop and
polydiff produce the same samples (checked to float32 rounding before timing). If ``k_diffusion`` is importable its
``sample_euler`` / ``sample_dpmpp_2m`` run as a third column on the same model in EDM variables.

Timing: one thread (``torch.set_num_threads(1)``), CPU time (``process_time``) of ``--steps`` steps per call,
the median over ``--repeats`` alternating calls after a warm-up; ratios are taken within one run: the ratio of
the medians and the median of the per-repeat ratios (``paired``: each polydiff call against the bare call run
right after it, which shared-machine load affects alike).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sampler_overhead.py --steps 50 --repeats 15
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import polydiff
from polydiff import Denoiser, processes
from polydiff.samplers import get_sampler, time_grid

SAMPLERS = ("ddim", "euler", "dpm++2m")


class NearFree(nn.Module):
    """One elementwise op: ``eps_hat = 0.1 x`` (ignores ``t``)."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.1 * x


class MLP(nn.Module):
    """``[x, t] -> 256 -> 256 -> D`` with SiLU; ``x`` of shape ``(B, D)``, ``t`` of shape ``(B,)``."""

    def __init__(self, dim: int = 2, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, t[:, None]], dim=1))


def bare_loop(net: nn.Module, x: Tensor, grid: Tensor, process, sampler: str) -> Tensor:
    """The bare equivalent of ``polydiff.sample(..., sampler=sampler)`` for an eps-predicting ``net``."""
    g = grid.to(torch.float64)
    v = process.schedule(g)
    a, s, lam = v.alpha.tolist(), v.sigma.tolist(), (0.5 * process.log_snr(g)).tolist()
    ts = g.to(x.dtype)[:, None].expand(-1, x.shape[0]).contiguous()
    n, prev = len(grid) - 1, None
    for i in range(n):
        eps = net(x, ts[i])
        x0 = (x - s[i] * eps) / a[i]
        if i == n - 1:
            return x0
        phi = a[i + 1] * -math.expm1(lam[i] - lam[i + 1])
        if sampler == "dpm++2m" and prev is not None:
            c = 0.5 * (lam[i + 1] - lam[i]) / (lam[i] - lam[i - 1])
            x = (s[i + 1] / s[i]) * x + phi * (x0 + c * (x0 - prev))
        else:  # ddim / euler in EDM variables (the same step)
            x = (s[i + 1] / s[i]) * x + phi * x0
        prev = x0
    return x


def k_diffusion_runner(net: nn.Module, process, grid: Tensor, sampler: str) -> Callable[[Tensor], Tensor] | None:
    """k-diffusion's sampler on the same model in EDM variables (``y = z / alpha``, ``sigma~ = sigma / alpha``), if installed."""
    try:
        from k_diffusion import sampling
    except ImportError:
        return None
    fn = {"euler": sampling.sample_euler, "dpm++2m": sampling.sample_dpmpp_2m}.get(sampler)
    if fn is None:
        return None
    g = grid[:-1].to(torch.float64)
    v = process.schedule(g)
    sig_tilde = torch.cat([v.sigma / v.alpha, torch.zeros(1, dtype=torch.float64)])

    def denoiser(y: Tensor, sig: Tensor) -> Tensor:
        t = process.t_from_log_snr(-2.0 * torch.log(sig.to(torch.float64))).to(y.dtype)
        alpha = process.schedule(t.to(torch.float64)).alpha.to(y.dtype)[:, None]
        eps = net(alpha * y, t)
        return y - sig.to(y.dtype)[:, None] * eps

    def run(z: Tensor) -> Tensor:
        return fn(denoiser, z / float(v.alpha[0]), sig_tilde.to(z.dtype), disable=True)

    return run


def _time(fn: Callable[[], Tensor]) -> float:
    """CPU time of one call (``process_time``: other load on a shared machine does not inflate it as much as wall time)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def measure(case: str, sampler: str, steps: int, repeats: int, *, check: bool = True, grid_kind: str = "log-snr") -> dict[str, float]:
    """Median ms/step of polydiff, the bare loop and (if installed) k-diffusion for one case and sampler.

    ``check``: first assert that polydiff and the bare loop give the same samples. ``grid_kind``: the grid of a
    polydiff without per-sampler default grids (``--before`` runs of older checkouts).
    """
    torch.manual_seed(0)
    batch, net = (16, NearFree()) if case == "near-free" else (4096, MLP())
    process = processes.get("vp-linear")
    model = Denoiser(net, process, prediction="eps").eval()
    spec = get_sampler(sampler)
    grid = time_grid(process, steps, kind=spec.grid_for(process) if hasattr(spec, "grid_for") else grid_kind)
    x1 = torch.randn(batch, 2)
    if check:
        with torch.no_grad():
            ours = polydiff.sample(model, x_start=x1, sampler=sampler, grid=grid).x
            bare = bare_loop(net, x1, grid, process, sampler)
        torch.testing.assert_close(ours, bare, rtol=1e-4, atol=1e-4 * float(bare.abs().max()))  # float32 rounding
    kd = k_diffusion_runner(net, process, grid, sampler)
    runs: dict[str, Callable[[], Tensor]] = {
        "polydiff": lambda: polydiff.sample(model, x_start=x1, sampler=sampler, grid=grid).x,
        "bare": lambda: bare_loop(net, x1, grid, process, sampler),
    }
    if kd is not None:
        runs["k-diffusion"] = lambda: kd(x1)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(repeats):
            for k, fn in runs.items():
                times[k].append(_time(fn))
    out = {k: 1e3 * statistics.median(v) / steps for k, v in times.items()}
    out["paired"] = statistics.median(a / b for a, b in zip(times["polydiff"], times["bare"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    ap.add_argument("--no-check", action="store_true", help="skip the same-samples check (an older polydiff whose euler differs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"polydiff at {polydiff.__file__}; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.steps} steps, median of {args.repeats} (CPU time)\n")
    print("| network | sampler | polydiff ms/step | bare ms/step | k-diffusion ms/step | polydiff / bare | paired ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in ("near-free", "mlp"):
        for sampler in args.samplers:
            r = measure(case, sampler, args.steps, args.repeats, check=not args.no_check)
            kd = f"{r['k-diffusion']:.3f}" if "k-diffusion" in r else "not installed"
            label = "near-free, batch 16" if case == "near-free" else "2x256 MLP, batch 4096"
            print(f"| {label} | {sampler} | {r['polydiff']:.3f} | {r['bare']:.3f} | {kd} | {r['polydiff'] / r['bare']:.2f} | {r['paired']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
