"""What ``polydiff train``, ``sample`` and ``evaluate`` do, as plain functions (the CLI and the demo call them)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import apply_overrides, diff_configs, flat_items, load_config, read_toml, resolve_config, save_config, set_value
from ..config import parse_override
from ..errors import ConfigError, DataError, UserInputError
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

    Relative file paths in the config (``data.path`` and other ``*_path``/``*_dir``/``*_file`` keys
    that name an existing file) are stored absolute, so the run works from any directory. The run
    directory is locked (``RUN/.lock``) from before ``config.toml`` is written until training ends.

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
    from contextlib import nullcontext

    from ..training import train
    from ..training.runlock import RunLock

    with RunLock(run.path) if rank() == 0 else nullcontext():  # before config.toml is (re)written
        with recipe_errors(recipe):
            cfg = _resume_config(recipe, run, preset, config_file, overrides) if resume else \
                _fresh_config(recipe, run, preset, config_file, overrides)
        if resume:
            check_not_finished(run, cfg, max_steps)
        if rank() == 0:  # the engine runs recipe.setup (rank 0) and handles DDP under torchrun
            run.ensure()
            save_config(cfg, run.config_path, header={"recipe": recipe.name})
        with recipe_errors(recipe, setup=True):
            return train(recipe, cfg, run, device=device, resume=resume, max_steps=max_steps, progress=progress)


def check_not_finished(run: RunDir, cfg: Any, max_steps: int | None) -> None:
    """``--resume`` of a run already at its last step is an error that says how to train further."""
    from ..training import latest_step

    steps = int(cfg.train.steps)
    done = latest_step(run.checkpoints)
    target = steps if max_steps is None else int(max_steps)
    if done < target:
        return
    limit = f"--max-steps {max_steps}" if max_steps is not None else f"train.steps = {steps}"
    raise UserInputError(f"run {str(run.path)!r} is already finished at step {done} ({limit}); to train further, "
                         f"resume with --max-steps N for some N > {done} (past train.steps = {steps} the learning "
                         "rate stays at its final value)")


def is_path_key(key: str) -> bool:
    """Whether a dotted config key names a file or folder (``data.path``, ``*_path``, ``*_dir``, ``*_file``)."""
    last = key.rsplit(".", 1)[-1]
    return last in {"path", "dir", "file"} or last.endswith(("_path", "_dir", "_file"))


def absolute_paths(cfg: Any, base: Path | None = None) -> Any:
    """``cfg`` with relative path values (:func:`is_path_key`) that exist under ``base`` (the current
    directory) made absolute; other values are left as they are."""
    base = Path.cwd() if base is None else base
    for key, value in flat_items(cfg).items():
        if not (is_path_key(key) and isinstance(value, (str, Path)) and str(value)):
            continue
        p = Path(value).expanduser()
        if "://" in str(value) or p.is_absolute() or not (base / p).exists():
            continue
        new = str((base / p).absolute())
        cfg = set_value(cfg, key, new if isinstance(value, str) else Path(new), source="absolute path")
    return cfg


def _fresh_config(recipe: Recipe, run: RunDir, preset: str | None, config_file: Any, overrides: list[str]) -> Any:
    if run.checkpoints.is_dir() and any(run.checkpoints.iterdir()):
        raise UserInputError(f"{str(run.path)!r} already holds a trained run (checkpoints/); "
                             "pass --resume to continue it, or choose a new --out")
    return absolute_paths(resolve_config(recipe, preset=preset, config_file=config_file, overrides=overrides))


def _resume_config(recipe: Recipe, run: RunDir, preset: str | None, config_file: Any, overrides: list[str]) -> Any:
    if not run.config_path.is_file():
        raise UserInputError(f"--resume: {str(run.config_path)!r} does not exist (nothing to resume)")
    saved_name = read_toml(run.config_path).get("recipe")
    if saved_name != recipe.name:
        raise ConfigError(f"--resume: {str(run.path)!r} is a run of recipe {saved_name!r}, not {recipe.name!r}")
    saved = load_config(recipe, run.config_path)
    if preset is None and config_file is None and not overrides:
        return saved
    wanted = absolute_paths(resolve_config(recipe, preset=preset, config_file=config_file, overrides=overrides))
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


SAMPLES_MANIFEST = ".polydiff-samples.json"
"""The list of files ``polydiff sample`` wrote into a directory (``--overwrite`` deletes exactly these)."""


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def check_sample_out(out: Path, *, overwrite: bool) -> list[Path]:
    """Refuse a non-empty ``out`` unless ``overwrite``; returns the files of an earlier ``polydiff sample``
    into ``out`` (to delete before writing) when ``overwrite`` is set."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {str(out)!r} is a file, not a directory")
    existing = _visible_files(out) if out.is_dir() else []
    if not existing:
        return []
    if not overwrite:
        raise UserInputError(f"--out {str(out)!r} already holds {len(existing)} file(s) (e.g. {existing[0].name!r}); "
                             "choose a new directory, or pass --overwrite to replace the samples written there before")
    try:
        names = json.loads((out / SAMPLES_MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [out / n for n in names if isinstance(n, str) and not Path(n).is_absolute() and ".." not in Path(n).parts]


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
    overwrite: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Load the run's latest (EMA) model, draw samples and write them into ``out``; returns the files.

    ``out`` must be empty or new: with ``overwrite`` the files an earlier ``polydiff sample`` wrote
    there (listed in ``out/.polydiff-samples.json``) are deleted first and other files are kept.
    With ``progress``, phase lines and the sampler's steps (when the recipe passes
    :func:`polydiff.progress.sampling_callback` to ``polydiff.sample``) go to stderr.
    """
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
    from ..progress import reporting

    out = Path(out)
    stale = check_sample_out(out, overwrite=overwrite)
    start = time.perf_counter()
    with recipe_errors(recipe):
        model = load_model(recipe, cfg, run, ema=True, device=device)
        process = getattr(model, "process", None)
        if process is not None and sampler not in sampler_names(process):
            raise UserInputError(
                f"sampler {sampler!r} does not work with this run's {process.name!r} process; "
                f"use one of: {', '.join(sampler_names(process))}"
            )
        header = f"sampling {recipe.name}: {num} sample(s), sampler {sampler}, {steps} steps, on {device}"
        with reporting(f"sampling {recipe.name}", enabled=progress and rank() == 0, header=header):
            samples = recipe.sample(model, cfg, run, num=num, sampler=sampler, steps=steps, seed=seed, options=opts)
        for f in stale:
            f.unlink(missing_ok=True)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            files = list(recipe.write_samples(samples, out, cfg, run))
        except BaseException:
            if created and not any(out.iterdir()):
                out.rmdir()  # no empty folder left behind by a failed write
            raise
    _write_manifest(out, files)
    _say(progress, f"sampling {recipe.name}: done in {time.perf_counter() - start:.1f} s")
    return files


def _write_manifest(out: Path, files: Sequence[Path]) -> None:
    names = []
    for f in files:
        try:
            names.append(Path(os.path.relpath(Path(f).absolute(), out.absolute())).as_posix())
        except ValueError:  # pragma: no cover - another drive (Windows)
            continue
    names = [n for n in names if not n.startswith("../")]
    (out / SAMPLES_MANIFEST).write_text(json.dumps({"files": names}, indent=1) + "\n")


def _say(enabled: bool, text: str) -> None:
    if enabled and rank() == 0:
        print(text, file=sys.stderr, flush=True)


FIXED_BY_RUN = ("data", "model", "train")
"""Config sections ``evaluate --set`` may not change: they define the trained model and its data
(file paths excepted: ``--set data.path=...`` points a run at its data where it lives now)."""


def run_evaluate(run_path: str | Path, *, samples: str | Path | None = None, device: str = "cpu",
                 overrides: Sequence[str] = (), progress: bool = False) -> dict[str, Any]:
    """The recipe's metrics for a run (and optionally a samples directory).

    ``overrides`` (``"eval.mc=32"``, ``"data.path=..."``) change evaluation settings for this call
    only; the run's ``config.toml`` is not rewritten.

    Raises:
        UserInputError: ``samples`` is not a directory or holds no files (a recipe that finds no
            samples it can read in it raises one too).
    """
    recipe, cfg, run = read_run(run_path)
    paths = [o for o in overrides if is_path_key(parse_override(o)[0])]
    cfg = apply_overrides(cfg, paths, source="evaluate --set")
    cfg = apply_overrides(cfg, [o for o in overrides if o not in paths], source="evaluate --set", fixed=FIXED_BY_RUN)
    cfg = absolute_paths(cfg)
    samples_dir = Path(samples) if samples is not None else None
    if samples_dir is not None:
        if not samples_dir.is_dir():
            raise DataError(f"--samples: {str(samples_dir)!r} is not a directory")
        if not _visible_files(samples_dir):
            raise DataError(f"--samples: {str(samples_dir)!r} holds no files (write some with 'polydiff sample RUN --out DIR')")
    from ..training import load_model
    from ..progress import reporting

    start = time.perf_counter()
    with recipe_errors(recipe):
        model = load_model(recipe, cfg, run, ema=True, device=device)
        header = (f"evaluating {recipe.name} ({run.path})" + (f" with the samples in {samples_dir}" if samples_dir else "")
                  + f" on {device}")
        with reporting(f"evaluating {recipe.name}", enabled=progress and rank() == 0, header=header):
            metrics = dict(recipe.evaluate(model, cfg, run, samples_dir))
    _say(progress, f"evaluating {recipe.name}: done in {time.perf_counter() - start:.1f} s")
    return metrics
