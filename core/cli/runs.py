"""What ``polydiff train``, ``sample`` and ``evaluate`` do, as plain functions (the CLI and the demo call them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import apply_overrides, diff_configs, flat_items, load_config, read_toml, resolve_config, save_config
from ..errors import ConfigError, UserInputError
from ..recipes import Recipe, RunDir, SampleConfig
from .common import get_recipe, rank, read_run, recipe_errors

def run_train(
    recipe_name: str,
    out: str | Path,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    max_steps: int | None = None,
    checkpoint_every: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Resolve the config, save ``RUN/config.toml``, run ``recipe.setup`` and the training engine.

    Returns:
        the engine's ``TrainResult``.
    """
    recipe = get_recipe(recipe_name)
    overrides = list(overrides)
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if checkpoint_every is not None:
        overrides.append(f"train.checkpoint_every={checkpoint_every}")
    if max_steps is not None and max_steps < 1:
        raise UserInputError(f"--max-steps must be at least 1, got {max_steps}")
    run = RunDir(out)
    with recipe_errors(recipe):
        cfg = _resume_config(recipe, run, preset, config_file, overrides) if resume else \
            _fresh_config(recipe, run, preset, config_file, overrides)
    if rank() == 0:  # the engine runs recipe.setup (rank 0) and handles DDP under torchrun
        run.ensure()
        save_config(cfg, run.config_path, header={"recipe": recipe.name})
    from ..training import train

    with recipe_errors(recipe, setup=True):
        return train(recipe, cfg, run, device=device, resume=resume, max_steps=max_steps, progress=progress)


def _fresh_config(recipe: Recipe, run: RunDir, preset: str | None, config_file: Any, overrides: list[str]) -> Any:
    if run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
        raise UserInputError(f"{str(run.path)!r} already holds a trained run (checkpoints/); "
                             "pass --resume to continue it, or choose a new --out")
    return resolve_config(recipe, preset=preset, config_file=config_file, overrides=overrides)


def _resume_config(recipe: Recipe, run: RunDir, preset: str | None, config_file: Any, overrides: list[str]) -> Any:
    if not run.config_path.is_file():
        raise UserInputError(f"--resume: {str(run.config_path)!r} does not exist (nothing to resume)")
    saved_name = read_toml(run.config_path).get("recipe")
    if saved_name != recipe.name:
        raise ConfigError(f"--resume: {str(run.path)!r} is a run of recipe {saved_name!r}, not {recipe.name!r}")
    saved = load_config(recipe, run.config_path)
    if preset is None and config_file is None and not overrides:
        return saved
    wanted = resolve_config(recipe, preset=preset, config_file=config_file, overrides=overrides)
    changed = diff_configs(saved, wanted)
    if changed:
        a, b = flat_items(saved), flat_items(wanted)
        shown = "; ".join(f"{k}: saved {a.get(k)!r}, now {b.get(k)!r}" for k in changed[:5])
        more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
        raise ConfigError(f"--resume: the config differs from {str(run.config_path)!r} in {shown}{more}; "
                          "resume uses the saved config (only --max-steps may change), or start a new --out")
    return saved


def parse_sample_options(recipe: Recipe, extra_args: Sequence[str], pairs: Sequence[str]) -> dict[str, Any]:
    """Recipe-specific sample options from ``--name value`` / ``--name=value`` and ``--opt name=value``.

    Returns every declared option (defaults filled in), converted to its declared type.
    """
    declared = {o.name.replace("-", "_"): o for o in getattr(recipe, "sample_options", ())}
    given: dict[str, str | bool] = {}
    args = list(extra_args)
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--") or tok == "--":
            raise UserInputError(f"unexpected argument {tok!r} for 'polydiff sample'")
        name, sep, value = tok[2:].partition("=")
        if not sep:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = True  # a bare flag
        given[name.replace("-", "_")] = value
        i += 1
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UserInputError(f"--opt expects name=value, got {pair!r}")
        given[name.strip().replace("-", "_")] = value
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join("--" + n.replace("_", "-") for n in declared) or "(none)"
        raise UserInputError(f"recipe {recipe.name!r} has no sample option --{unknown[0].replace('_', '-')}; "
                             f"its options: {known}")
    out = {}
    for name, opt in declared.items():
        out[opt.name] = _convert_option(opt, given[name]) if name in given else opt.default
    return out


def _convert_option(opt: Any, value: str | bool) -> Any:
    tp = opt.type
    if tp is bool:
        if isinstance(value, bool):
            return value
        if value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
    elif isinstance(value, bool):
        raise UserInputError(f"sample option --{opt.name} needs a value ({tp.__name__})")
    else:
        try:
            return tp(value)
        except (TypeError, ValueError):
            pass
    raise UserInputError(f"sample option --{opt.name}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def run_sample(
    run_path: str | Path,
    out: str | Path,
    *,
    num: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    extra_args: Sequence[str] = (),
    option_pairs: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Load the run's latest (EMA) model, draw samples and write them into ``out``; returns the files."""
    recipe, cfg, run = read_run(run_path)
    opts = parse_sample_options(recipe, extra_args, option_pairs)
    opts.update(options or {})
    defaults = getattr(cfg, "sample", SampleConfig())
    num = defaults.num if num is None else num
    sampler = defaults.sampler if sampler is None else sampler
    steps = defaults.steps if steps is None else steps
    if num < 1 or steps < 1:
        raise UserInputError(f"--num and --steps must be at least 1, got num={num}, steps={steps}")
    from ..samplers import names as sampler_names

    known = sampler_names()
    if sampler not in known:
        raise UserInputError(f"unknown sampler {sampler!r}; known samplers: {', '.join(known)}")
    from ..training import load_model

    out = Path(out)
    with recipe_errors(recipe):
        model = load_model(recipe, cfg, run, ema=True, device=device)
        process = getattr(model, "process", None)
        if process is not None and sampler not in sampler_names(process):
            raise UserInputError(
                f"sampler {sampler!r} does not work with this run's {process.name!r} process; "
                f"use one of: {', '.join(sampler_names(process))}"
            )
        samples = recipe.sample(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed, options=opts)
        out.mkdir(parents=True, exist_ok=True)
        return list(recipe.write_samples(samples, out, cfg, run))


FIXED_BY_RUN = ("data", "model", "train")
"""Config sections ``evaluate --set`` may not change: they define the trained model and its data."""


def run_evaluate(run_path: str | Path, *, samples: str | Path | None = None, device: str = "cpu",
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe's metrics for a run (and optionally a samples directory).

    ``overrides`` (``"eval.mc=32"``) change evaluation settings for this call only; the run's
    ``config.toml`` is not rewritten.
    """
    recipe, cfg, run = read_run(run_path)
    cfg = apply_overrides(cfg, overrides, source="evaluate --set", fixed=FIXED_BY_RUN)
    samples_dir = Path(samples) if samples is not None else None
    if samples_dir is not None and not samples_dir.is_dir():
        raise UserInputError(f"--samples: {str(samples_dir)!r} is not a directory")
    from ..training import load_model

    with recipe_errors(recipe):
        model = load_model(recipe, cfg, run, ema=True, device=device)
        return dict(recipe.evaluate(model, cfg, run, samples_dir))
