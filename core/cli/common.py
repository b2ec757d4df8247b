"""Helpers shared by the CLI commands: recipe lookup, run directories, error translation."""

from __future__ import annotations

import contextlib
import importlib.metadata as metadata
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, MissingExtraError, UserInputError
from ..recipes import Recipe, RunDir


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name``; an unknown name lists the known ones (UserInputError)."""
    from ..plugins import registries

    recipes = registries().recipes
    if name not in recipes:
        known = ", ".join(recipes.names()) or "(none installed; see 'polydiff plugins')"
        raise UserInputError(f"unknown recipe {name!r}; known recipes: {known}")
    return recipes.get(name)


def recipe_plugin(name: str) -> str | None:
    """The name of the plugin that registered recipe ``name``."""
    from ..plugins import registries

    recipes = registries().recipes
    return recipes.entry(name).plugin if name in recipes else None


def read_run(path: str | Path) -> tuple[Recipe, Any, RunDir]:
    """``(recipe, config, run)`` of an existing run directory (reads ``RUN/config.toml``)."""
    from ..config import load_config, read_toml

    run = RunDir(path)
    if not run.config_path.is_file():
        raise UserInputError(f"{str(run.path)!r} is not a run directory: {str(run.config_path)!r} does not exist "
                             "(create one with 'polydiff train RECIPE --out RUN')")
    name = read_toml(run.config_path).get("recipe")
    if not isinstance(name, str):
        raise ConfigError(f"{str(run.config_path)!r} has no top-level 'recipe = \"...\"' key")
    recipe = get_recipe(name)
    with recipe_errors(recipe):
        cfg = load_config(recipe, run.config_path)
    return recipe, cfg, run


@contextlib.contextmanager
def recipe_errors(recipe: Recipe, *, setup: bool = False) -> Iterator[None]:
    """Turn a plugin's missing heavy dependency (ImportError) into a one-line install hint.

    With ``setup=True`` a ``ValueError`` raised inside ``recipe.setup`` or ``recipe.datasets`` (the
    recipe contract's signal for bad user data) is also shown as one line; other errors keep their
    traceback (they are bugs).
    """
    try:
        yield
    except UserInputError:
        raise
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        if not module or module.startswith("polydiff"):
            raise
        raise missing_dependency_error(recipe, module) from exc
    except ValueError as exc:
        if setup and _raised_in(exc, recipe, ("setup", "datasets")):
            raise DataError(f"recipe {recipe.name!r}: {exc}") from exc
        raise


def _raised_in(exc: BaseException, recipe: Recipe, methods: tuple[str, ...]) -> bool:
    """Whether ``exc`` was raised while one of ``recipe``'s ``methods`` was running."""
    codes = {getattr(getattr(type(recipe), m, None), "__code__", None) for m in methods} - {None}
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def missing_dependency_error(recipe: Recipe, module: str) -> UserInputError:
    """A :class:`MissingExtraError` (or a plain hint) for ``module`` needed by ``recipe``."""
    plugin = recipe_plugin(recipe.name)
    dist_name = _plugin_distribution(plugin) or "polydiff"
    extra = _extra_providing(dist_name, module)
    if extra is not None and dist_name == "polydiff":
        return MissingExtraError(module, extra)
    if extra is not None:
        return UserInputError(f"{module} is not installed; install it with: pip install '{dist_name}[{extra}]'")
    return UserInputError(f"recipe {recipe.name!r} needs the Python module {module!r}, which is not installed; "
                          f"install the dependencies of {dist_name!r} (e.g. pip install {module})")


def _plugin_distribution(plugin: str | None) -> str | None:
    if plugin is None:
        return None
    from ..plugins import plugin_infos

    for info in plugin_infos():
        if info.name == plugin:
            return info.distribution
    return None


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _extra_providing(dist_name: str, module: str) -> str | None:
    """The extra of ``dist_name`` whose requirement names ``module`` (normalised), if any."""
    try:
        requires = metadata.distribution(dist_name).requires or []
    except metadata.PackageNotFoundError:
        return None
    for req in requires:
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if m and _norm(m.group(1)) == _norm(module) and m.group(2) != "all":
            return m.group(2)
    return None


def rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0") or 0)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked.

    Raises:
        UserInputError: an unknown device, or one this machine does not have (one line naming it).
    """
    import torch

    name = device.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, sep, index = name.partition(":")
    if kind == "cpu" and not sep:
        return "cpu"
    if kind == "cuda" and (not sep or index.isdigit()):
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: CUDA is not available on this machine "
                                 "(no GPU, or torch was built without CUDA); use --device cpu or auto")
        if sep and int(index) >= torch.cuda.device_count():
            raise UserInputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                 f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
        return name
    if kind == "mps" and not sep:
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserInputError(f"--device {device}: Apple MPS is not available on this machine; use --device cpu")
        return "mps"
    raise UserInputError(f"--device {device!r} is not a device polydiff knows; expected cpu, cuda, cuda:N, mps or auto")


def to_jsonable(value: Any) -> Any:
    """Metrics to plain JSON types (tensors and numpy scalars become floats; NaN/inf become strings)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else str(f)


def dump_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)
