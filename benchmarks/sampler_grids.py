"""Sampler x time grid: distance from the exact probability-flow ODE map, for Gaussian data.

Data ``x_0 ~ N(mu, diag(s^2))`` (D = 6, unequal ``mu`` and ``s``, float64) and the exact x0-denoiser
(``GaussianOracleNet``). Start: 64 exact draws of the marginal at the process's ``t_max`` (so only the
sampler's discretisation is measured, not the prior's mismatch). Target: the closed-form PF-ODE map
from ``t_max`` to the grid's last time before 0 (``t_min``), followed by the exact x0 estimate there;
that is what every sampler returns as its steps grow (the final step to ``t = 0`` returns ``x0_hat``).
Error: the maximum absolute difference over samples and dimensions.

NFE: heun costs ``2 * steps - 1`` on grids ending at 0 (so it gets ``(nfe + 1) // 2`` steps), the
others ``steps``; the NFE column is the budget, no sampler exceeds it. Grids a process cannot start (``log-snr``/``karras``
from ``alpha = 0``, e.g. flow at t = 1) are shown as ``-``.

With ``--stochastic`` it also prints, for ddpm, euler-maruyama and pc, the error of the output moments
(20 000 samples from the exact marginal at the sampler's start; the stochastic samplers' defaults were
chosen on these numbers at 20 and 50 steps).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sampler_grids.py --schedule vp-linear --nfe 5 10 20 50
    OMP_NUM_THREADS=1 python benchmarks/sampler_grids.py --schedule vp-linear vp-cosine ve edm flow sub-vp --stochastic
"""

from __future__ import annotations

import argparse
import math

import torch

import polydiff
from polydiff import Denoiser, processes
from polydiff.samplers import GRID_KINDS
from polydiff.testing.oracles import GaussianOracleNet, ideal_sampler_output

ODE_SAMPLERS = ("euler", "ddim", "heun", "dpm++2m", "dpm++3m")
MU = (0.0, 1.0, -2.0, 0.5, 3.0, -1.0)
S = (1.0, 0.5, 2.0, 0.2, 1.5, 0.8)


def steps_for(sampler: str, nfe: int) -> int:
    """The most steps ``sampler`` can take within ``nfe`` network evaluations (grid ending at 0)."""
    return max((nfe + 1) // 2, 1) if sampler == "heun" else nfe


def grid_error(schedule: str, sampler: str, grid: str, nfe: int, n: int = 64, seed: int = 0) -> float:
    """Max abs error of ``sampler`` on ``grid`` within ``nfe`` evaluations; ``nan`` if the grid cannot start."""
    process = processes.get(schedule)
    mu, s = torch.tensor(MU, dtype=torch.float64), torch.tensor(S, dtype=torch.float64)
    model = Denoiser(GaussianOracleNet(process, mu, s), process, prediction="x0")
    t0 = process.t_max
    v0 = process.schedule(torch.tensor([t0], dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    z = v0.alpha * mu + torch.sqrt(v0.alpha**2 * s**2 + v0.sigma**2) * torch.randn(n, len(MU), generator=g, dtype=torch.float64)
    try:
        r = polydiff.sample(model, x_start=z, sampler=sampler, steps=steps_for(sampler, nfe), grid=grid, t_start=t0)
    except ValueError:
        return math.nan
    assert r.nfe <= nfe, (sampler, nfe, r.nfe)
    return float((r.x - ideal_sampler_output(process, mu, s, z, t0, float(r.grid[-2]))).abs().max())


def table(schedule: str, nfes: list[int], samplers=ODE_SAMPLERS) -> str:
    """The markdown table: one row per sampler x grid, one column per NFE; the default grid is marked."""
    process = processes.get(schedule)
    lines = ["| sampler | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "| --- | --- |" + " --- |" * len(nfes)]
    for sampler in samplers:
        default = polydiff.samplers.get_sampler(sampler).grid_for(process)
        errs = {grid: [grid_error(schedule, sampler, grid, n) for n in nfes] for grid in GRID_KINDS}
        for grid in GRID_KINDS:
            best = [min(e[j] for e in errs.values() if not math.isnan(e[j])) for j in range(len(nfes))]
            cells = []
            for j, e in enumerate(errs[grid]):
                cell = "-" if math.isnan(e) else f"{e:.2e}"
                cells.append(f"**{cell}**" if not math.isnan(e) and e == best[j] else cell)
            mark = " (default)" if grid == default else ""
            lines.append(f"| {sampler} | {grid}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


STOCHASTIC_SAMPLERS = ("ddpm", "euler-maruyama", "pc")


def moment_error(schedule: str, sampler: str, grid: str, steps: int, n: int = 20_000, seed: int = 1) -> float:
    """Stochastic samplers: ``max_d sqrt(mean error^2 + std error^2) / s_d`` against the ideal sampler's output moments
    (from the exact marginal at the sampler's start); ``nan`` if the grid cannot run."""
    process = processes.get(schedule)
    mu, s = torch.tensor(MU, dtype=torch.float64), torch.tensor(S, dtype=torch.float64)
    model = Denoiser(GaussianOracleNet(process, mu, s), process, prediction="x0")
    t0 = polydiff.samplers.get_sampler(sampler).start_for(process)
    v0 = process.schedule(torch.tensor([t0], dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    z = v0.alpha * mu + torch.sqrt(v0.alpha**2 * s**2 + v0.sigma**2) * torch.randn(n, len(MU), generator=g, dtype=torch.float64)
    try:
        r = polydiff.sample(model, x_start=z, sampler=sampler, steps=steps, grid=grid, t_start=t0, generator=g)
    except ValueError:
        return math.nan
    vl = process.schedule(r.grid[-2:-1])
    target_std = vl.alpha * s**2 / torch.sqrt(vl.alpha**2 * s**2 + vl.sigma**2)
    w = torch.sqrt((r.x.mean(0) - mu) ** 2 + (r.x.std(0) - target_std) ** 2) / s
    return float(w.max())


def stochastic_table(schedules: list[str], steps: tuple[int, ...] = (20, 50)) -> str:
    """Moment errors of the stochastic samplers per schedule x grid (n = 20 000: sampling noise ~0.02)."""
    head = " | ".join(f"{g} {n}" for n in steps for g in GRID_KINDS)
    lines = [f"| schedule | sampler | {head} |", "| --- | --- |" + " --- |" * (len(steps) * len(GRID_KINDS))]
    for schedule in schedules:
        process = processes.get(schedule)
        for sampler in STOCHASTIC_SAMPLERS:
            default = polydiff.samplers.get_sampler(sampler).grid_for(process)
            cells = []
            for n in steps:
                for grid in GRID_KINDS:
                    e = moment_error(schedule, sampler, grid, n)
                    cell = "-" if math.isnan(e) else f"{e:.3f}"
                    cells.append(f"{cell}*" if grid == default else cell)
            lines.append(f"| {schedule} | {sampler} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schedule", nargs="+", default=["vp-linear"])
    ap.add_argument("--nfe", nargs="+", type=int, default=[5, 10, 20, 50])
    ap.add_argument("--samplers", nargs="+", default=list(ODE_SAMPLERS))
    ap.add_argument("--stochastic", action="store_true", help="also the moment errors of ddpm, euler-maruyama, pc")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for schedule in args.schedule:
        print(f"### {schedule}: max abs error vs the closed-form PF-ODE map (bold: best grid at that NFE)\n")
        print(table(schedule, args.nfe, args.samplers))
        print()
    if args.stochastic:
        print("### stochastic samplers: max over dimensions of sqrt(mean err^2 + std err^2) / s (n = 20 000; * = default)\n")
        print(stochastic_table(args.schedule))


if __name__ == "__main__":
    main()
