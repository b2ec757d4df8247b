"""The core's CLI commands (registered by the built-in plugin through ``register_commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import dump_json, resolve_device

THREADS_HELP = ("CPU threads for torch (default: one less than the usable cores, or OMP_NUM_THREADS / "
                "POLYDIFF_THREADS when set).")


def add_core_commands(cli: typer.Typer) -> None:
    """Add ``plugins``, ``recipes``, ``train``, ``sample``, ``evaluate``, ``show``, ``demo`` and ``new-plugin`` to ``cli``."""
    from .info import recipes, show

    cli.command("plugins")(plugins)
    cli.command("recipes")(recipes)
    cli.command("train")(train)
    cli.command("sample", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(sample)
    cli.command("evaluate")(evaluate)
    cli.command("show")(show)
    cli.command("demo")(demo)
    cli.command("new-plugin")(new_plugin)


def _threads(n: Optional[int]) -> None:
    from .threads import apply_threads

    apply_threads(n)


def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per plugin."),
) -> None:
    """List installed plugins: version, status (loaded/failed/blocked) and what each registered."""
    from ..plugins import plugin_infos

    infos = plugin_infos()
    if as_json:
        typer.echo(dump_json([i.to_dict() for i in infos]))
        return
    for info in infos:
        line = f"{info.name} {info.version or '?'} [{info.status}]"
        typer.echo(line + (f" {info.error}" if info.error else ""))
        for kind, names in info.registered.items():
            if names:
                typer.echo(f"    {kind}: {', '.join(names)}")


def train(
    recipe: str = typer.Argument(..., help="Recipe name, e.g. text/mdlm (see 'polydiff plugins')."),
    out: Path = typer.Option(..., "--out", help="Run directory to create (or resume)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset: tiny, small, base..."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with config overrides."),
    set_: list[str] = typer.Option([], "--set", help="Override one key: --set train.lr=1e-3 (repeatable)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Train until this many steps in total "
                                            "(default: train.steps; with --resume, more continues a finished run)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Same as --set train.checkpoint_every=K."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same as --set train.seed=S."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 or auto."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Train a recipe into a run directory (works the same under torchrun)."""
    from .common import rank
    from .runs import run_train

    device = resolve_device(device)
    _threads(threads)
    result = run_train(recipe, out, preset=preset, config_file=config, overrides=set_, max_steps=max_steps,
                       checkpoint_every=checkpoint_every, seed=seed, device=device, resume=resume,
                       progress=progress)
    if rank() == 0:
        this_call = getattr(result, "steps_this_call", result.steps)
        what = (f"trained {this_call} steps (steps {result.steps - this_call}->{result.steps}; {result.steps} in total)"
                if this_call != result.steps else f"trained {result.steps} steps")
        typer.echo(f"{what} in {result.seconds:.1f} s; final loss {result.final_loss:.4g}; checkpoint: {result.checkpoint}")


def sample(
    ctx: typer.Context,
    run: Path = typer.Argument(..., help="A run directory made by 'polydiff train'."),
    out: Path = typer.Option(..., "--out", help="Directory for the sample files."),
    num: Optional[int] = typer.Option(None, "--num", help="Number of samples (default: the config's sample.num)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Sampler name (default: the config's sample.sampler)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampler steps (default: the config's sample.steps)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    opt: list[str] = typer.Option([], "--opt", help="A recipe option: --opt name=value (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out, replacing the files an "
                                   "earlier 'polydiff sample' wrote there (otherwise a non-empty --out is refused)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show what is being done, and a bar."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Draw samples from a trained run; recipe options are given as --name value or --opt name=value.

    'polydiff sample RUN --help' also lists the options of RUN's recipe.
    """
    import time

    from .runs import run_sample

    device = resolve_device(device)
    _threads(threads)
    start = time.perf_counter()
    files = run_sample(run, out, num=num, sampler=sampler, steps=steps, seed=seed, device=device,
                       extra_args=list(ctx.args), option_pairs=opt, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {len(files)} file(s) to {out} in {time.perf_counter() - start:.1f} s")


def evaluate(
    run: Path = typer.Argument(..., help="A run directory made by 'polydiff train'."),
    samples: Optional[Path] = typer.Option(None, "--samples", help="A directory written by 'polydiff sample'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the metrics to this JSON file."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    set_: list[str] = typer.Option([], "--set", help="Override an evaluation setting: --set eval.mc=32 (repeatable; "
                                                     "data.*, model.* and train.* are fixed by the run, except file "
                                                     "paths such as data.path)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show what is being done, and a bar."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Compute the recipe's metrics and print them as JSON."""
    from .runs import run_evaluate

    device = resolve_device(device)
    _threads(threads)
    metrics = run_evaluate(run, samples=samples, device=device, overrides=set_, progress=progress)
    text = dump_json(metrics)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


def demo(
    out: Path = typer.Option(Path("polydiff-demo"), "--out", help="Directory for runs, samples and report.md."),
    recipe: list[str] = typer.Option([], "--recipe", help="Only these recipes (default: every plugin's demo recipe)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Training steps per recipe (default: the tiny preset's)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show each recipe and phase as it goes."),
    threads: Optional[int] = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Train every installed demo recipe's tiny preset, sample, evaluate and write DIR/report.md."""
    from ..demo import run_demo

    device = resolve_device(device)
    _threads(threads)
    result = run_demo(out, recipes=recipe or None, max_steps=max_steps, device=device, progress=progress)
    for item in result.items:
        typer.echo(f"{item.recipe}: {'ok' if item.ok else 'FAILED: ' + str(item.error)}")
    typer.echo(f"report: {result.report}")
    if not result.ok:
        raise typer.Exit(1)


def new_plugin(
    name: str = typer.Argument(..., help="Plugin name (lowercase letters, digits, '-'), e.g. 'spirals'."),
    out: Path = typer.Option(Path("."), "--out", help="Parent directory of the new package folder."),
) -> None:
    """Write a working third-party plugin package (pyproject, one recipe, one test)."""
    from ..scaffold import write_plugin

    root = write_plugin(name, out)
    typer.echo(f"wrote {root}\nnext: pip install -e {root} && polydiff plugins")
