"""Discoverability: ``polydiff recipes [NAME]``, ``polydiff show RUN`` and a run's sample options for ``sample RUN --help``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import typer

from .common import get_recipe


def recipes(
    name: Optional[str] = typer.Argument(None, help="A recipe name: show its config keys, presets and sample options."),
) -> None:
    """List the installed recipes; with NAME, its config keys (type = default), presets and sample options."""
    from ..plugins import registries

    if name is None:
        entries = registries().recipes.entries()
        if not entries:
            typer.echo("no recipes installed (see 'polydiff plugins')")
        for entry in entries:
            r = entry.obj
            presets = ", ".join(getattr(r, "presets", {}) or {}) or "-"
            desc = getattr(r, "description", "") or ""
            typer.echo(f"{entry.name}  [{entry.plugin}]  presets: {presets}" + (f"  {desc}" if desc else ""))
        return
    typer.echo(describe_recipe(name))


def describe_recipe(name: str) -> str:
    """The text ``polydiff recipes NAME`` prints."""
    from ..config import default_config, flat_items
    from .common import recipe_plugin

    recipe = get_recipe(name)
    lines = [f"{recipe.name}  [plugin {recipe_plugin(recipe.name)}]"]
    if getattr(recipe, "description", ""):
        lines.append(f"  {recipe.description}")
    cfg = default_config(recipe)
    types = config_types(cfg)
    lines += ["", "config keys (type = default; set with --set KEY=VALUE or a --config TOML file):"]
    width = max((len(k) for k in types), default=0)
    for key, value in flat_items(cfg).items():
        lines.append(f"  {key:<{width}}  {types.get(key, '?')} = {_show(value)}")
    presets = dict(getattr(recipe, "presets", {}) or {})
    lines += ["", "presets (--preset NAME):" if presets else "presets: none"]
    for pname, values in presets.items():
        lines.append(f"  {pname}: " + ", ".join(f"{k}={_show(v)}" for k, v in dict(values).items()))
    lines += ["", sample_options_text(recipe)]
    return "\n".join(lines)


def config_types(cfg: Any, prefix: str = "") -> dict[str, str]:
    """``{"train.lr": "float", ...}``: the declared type of every leaf of a config dataclass."""
    from ..config.coerce import field_types, type_name

    out: dict[str, str] = {}
    hints = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out.update(config_types(v, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = type_name(hints.get(f.name, type(v)))
    return out


def sample_options_text(recipe: Any) -> str:
    """The recipe's ``polydiff sample`` options, one per line."""
    options = tuple(getattr(recipe, "sample_options", ()) or ())
    if not options:
        return f"recipe {recipe.name!r} has no sample options of its own"
    lines = [f"sample options of recipe {recipe.name!r} (--NAME VALUE or --opt NAME=VALUE):"]
    for o in options:
        tp = getattr(o.type, "__name__", str(o.type))
        flag = f"--{o.name.replace('_', '-')}"
        lines.append(f"  {flag} {tp.upper() if tp != 'bool' else ''}".rstrip()
                     + f"  (default {_show(o.default)})" + (f"  {o.help}" if o.help else ""))
    return "\n".join(lines)


def run_sample_options_text(args: list[str]) -> str | None:
    """For ``polydiff sample RUN --help``: the sample options of RUN's recipe (``None`` when no RUN is named)."""
    from .common import read_run

    for tok in args:
        if not tok.startswith("-") and (Path(tok) / "config.toml").is_file():
            recipe, _, _ = read_run(tok)
            return sample_options_text(recipe)
    return None


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def show(
    run: Path = typer.Argument(..., help="A run directory made by 'polydiff train'."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Where to write the loss curve (default: RUN/loss.png)."),
) -> None:
    """Print a run's recipe, config, steps done and last metrics; write its loss curve as a PNG."""
    from ..training import latest_step
    from ..training.metrics_log import read_metrics
    from .common import read_run

    recipe, cfg, rd = read_run(run)
    steps_total = getattr(getattr(cfg, "train", None), "steps", None)
    done = latest_step(rd.checkpoints)
    typer.echo(f"run {rd.path}: recipe {recipe.name}; {done} of train.steps={steps_total} steps done"
               + ("" if done else " (no checkpoint yet)"))
    lock = rd.path / ".lock"
    if lock.exists():
        typer.echo(f"lock: {lock.read_text().strip()} (a process is training into it, or was killed)")
    rows = read_metrics(rd.metrics_log) if rd.metrics_log.is_file() else []
    last: dict[str, Any] = {}
    for row in rows:
        last.update({k: v for k, v in row.items() if v == v})  # later rows win; NaN (empty) cells do not
    if last:
        typer.echo("last metrics: " + ", ".join(f"{k} {_fmt(v)}" for k, v in last.items()))
    typer.echo("")
    typer.echo(f"# {rd.config_path}")
    typer.echo(rd.config_path.read_text().rstrip())
    typer.echo("")
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r and r["loss"] == r["loss"]]
    typer.echo(write_loss_plot(losses, plot if plot is not None else rd.path / "loss.png", title=f"{recipe.name}: {rd.path.name}"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_loss_plot(losses: list[tuple[float, float]], path: Path, *, title: str = "") -> str:
    """Write the loss curve to ``path`` with matplotlib; returns a line saying what was done (or why not)."""
    if not losses:
        return "loss curve: skipped (metrics.csv has no loss rows yet)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "loss curve: skipped (matplotlib is not installed; pip install 'polydiff[timeseries]' or matplotlib)"
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    try:
        ax.plot([s for s, _ in losses], [v for _, v in losses], marker="." if len(losses) < 50 else None)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return f"loss curve: {path} ({len(losses)} point(s))"


__all__ = ["config_types", "describe_recipe", "recipes", "run_sample_options_text", "sample_options_text", "show",
           "write_loss_plot"]
