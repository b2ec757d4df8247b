"""``polydiff demo``: train every installed demo recipe's ``tiny`` preset, sample, evaluate, report.

Which recipes are demo recipes: for each plugin, the recipes marked ``demo = True`` (a class
attribute, or ``register(recipe, demo=True)``); a plugin that marks none contributes its first
registered recipe, unless that recipe says ``demo = False``. One failing recipe is recorded in the
report (with its traceback in ``runs/<recipe>/error.txt``) and does not stop the others.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cli.common import get_recipe
from .cli.runs import run_evaluate, run_sample, run_train

DEMO_PRESET = "tiny"


@dataclass(frozen=True)
class DemoItem:
    """One recipe's demo outcome (``error`` is ``"Type: message"`` when it failed)."""

    recipe: str
    ok: bool
    error: str | None = None
    run_dir: Path | None = None
    samples_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train_steps: int | None = None
    final_loss: float | None = None
    seconds: float = 0.0
    markdown: str = ""


@dataclass(frozen=True)
class DemoResult:
    """All outcomes and the path of ``report.md``."""

    items: tuple[DemoItem, ...]
    report: Path

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)


def demo_recipes() -> list[str]:
    """The demo recipe names, plugin by plugin (see the module docstring for the rule)."""
    from .plugins import registries

    by_plugin: dict[str, list[Any]] = {}
    for entry in registries().recipes.entries():
        by_plugin.setdefault(entry.plugin, []).append(entry)
    chosen: list[str] = []
    for entries in by_plugin.values():
        marked = [e.name for e in entries if _demo_flag(e) is True]
        if marked:
            chosen += marked
        elif entries and _demo_flag(entries[0]) is not False:
            chosen.append(entries[0].name)
    return chosen


def _demo_flag(entry: Any) -> bool | None:
    if "demo" in entry.meta:
        return bool(entry.meta["demo"])
    flag = getattr(entry.obj, "demo", None)
    return None if flag is None else bool(flag)


def run_demo(out: str | Path, *, recipes: Sequence[str] | None = None, max_steps: int | None = None,
             device: str = "cpu", num: int | None = None, progress: bool = False) -> DemoResult:
    """Run the demo into ``out`` and write ``out/report.md``.

    Args:
        out: output directory (``runs/``, ``samples/``, ``figures/`` (only where a recipe drew a
            figure) and ``report.md``).
        recipes: recipe names (default: :func:`demo_recipes`). max_steps: training steps per recipe
            (default: the tiny preset's). device: training and sampling device. num: number of
            samples (default: the config's). progress: print each recipe and phase (train, sample,
            evaluate, report) to stderr as it starts, with the training and sampling progress.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(recipes) if recipes else demo_recipes()
    items = tuple(_run_one(name, out, max_steps=max_steps, device=device, num=num, progress=progress,
                           where=f"[{i}/{len(names)}]") for i, name in enumerate(names, 1))
    _remove_if_empty(out / "figures")
    report = out / "report.md"
    report.write_text(render_report(items, device=device, out=out))
    return DemoResult(items, report)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "recipe"


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when empty
    except OSError:
        pass


def _run_one(name: str, out: Path, *, max_steps: int | None, device: str, num: int | None, progress: bool = False,
             where: str = "") -> DemoItem:
    def phase(text: str) -> None:
        if progress:
            print(f"demo {where} {name}: {text}", file=sys.stderr, flush=True)

    slug = _slug(name)
    run_dir, samples_dir, fig_dir = out / "runs" / slug, out / "samples" / slug, out / "figures" / slug
    start = time.perf_counter()
    for d in (run_dir, samples_dir, fig_dir):  # the demo's own folders from an earlier demo
        if d.exists():
            shutil.rmtree(d)
    result = None
    try:
        phase(f"train (preset {DEMO_PRESET}" + (f", {max_steps} steps" if max_steps else "") + ")")
        result = run_train(name, run_dir, preset=DEMO_PRESET, max_steps=max_steps, device=device, progress=progress)
        phase("sample")
        run_sample(run_dir, samples_dir, num=num, device=device, progress=progress)
        phase("evaluate")
        metrics = run_evaluate(run_dir, samples=samples_dir, device=device, progress=progress)
        phase("report")
        fig_dir.mkdir(parents=True, exist_ok=True)
        try:
            markdown = get_recipe(name).report(metrics, samples_dir, fig_dir)
        finally:
            _remove_if_empty(fig_dir)  # no empty folders: only recipes that drew figures keep one
        markdown = _relink(markdown, fig_dir, out) + _plots_not_linked(markdown, (fig_dir, samples_dir), out)
        phase(f"ok in {time.perf_counter() - start:.1f} s")
    except Exception as exc:  # one failing recipe must not stop the others
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        phase(f"FAILED: {type(exc).__name__}: {' '.join(str(exc).split())} (traceback in {run_dir / 'error.txt'})")
        return DemoItem(name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())}", run_dir, None, {},
                        getattr(result, "steps", None), getattr(result, "final_loss", None),
                        time.perf_counter() - start)
    return DemoItem(name, True, None, run_dir, samples_dir, dict(metrics), result.steps, result.final_loss,
                    time.perf_counter() - start, markdown)


def _plots_not_linked(markdown: str, folders: Sequence[Path], out: Path) -> str:
    """Markdown images for the PNG files a recipe wrote (into its figures or samples folder) but did not link."""
    lines = []
    for folder in folders:
        for png in sorted(folder.glob("*.png")) if folder.is_dir() else []:
            if png.name not in markdown:
                rel = Path(os.path.relpath(png, out)).as_posix()
                lines.append(f"![{png.stem}]({rel})")
    return ("\n\n" + "\n".join(lines) + "\n") if lines else ""


def _relink(markdown: str, fig_dir: Path, out: Path) -> str:
    """Rewrite links to files in ``fig_dir`` (relative or absolute) as paths relative to ``out``."""

    def fix(m: re.Match[str]) -> str:
        target = m.group(2)
        if re.match(r"^[a-z]+://", target) or target.startswith("#"):
            return m.group(0)
        p = Path(target)
        candidate = p if p.is_absolute() else fig_dir / p
        if candidate.exists():
            return f"{m.group(1)}({Path(os.path.relpath(candidate, out)).as_posix()})"
        return m.group(0)

    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, markdown)


def render_report(items: Sequence[DemoItem], *, device: str, out: Path | None = None) -> str:
    """The Markdown of ``report.md``."""
    import torch

    from ._version import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# polydiff demo", "",
             f"Made by `polydiff demo` on {now} (polydiff {__version__}, torch {torch.__version__}, device {device}, "
             f"preset `{DEMO_PRESET}`).", "",
             "| recipe | status | steps | final loss | time (s) |", "|---|---|---|---|---|"]
    for it in items:
        loss = f"{it.final_loss:.4g}" if isinstance(it.final_loss, float) else "–"
        lines.append(f"| {it.recipe} | {'ok' if it.ok else 'failed'} | {it.train_steps if it.train_steps is not None else '–'}"
                     f" | {loss} | {it.seconds:.1f} |")
    if not items:
        lines += ["", "No demo recipe is installed (see `polydiff plugins`)."]
    for it in items:
        lines += ["", f"## {it.recipe}", ""]
        if not it.ok:
            err_rel = _rel(it.run_dir / "error.txt", out) if it.run_dir else ""
            lines += [f"**Failed:** `{it.error}`", "", f"Traceback: [{err_rel}]({err_rel})"]
            continue
        run_dir, samples_dir = (_rel(p, out) for p in (it.run_dir, it.samples_dir))
        lines += [f"Run: [{run_dir}]({run_dir}) · samples: [{samples_dir}]({samples_dir})", "", it.markdown.strip()]
    return "\n".join(lines) + "\n"


def _rel(path: Path | None, out: Path | None) -> str:
    if path is None:
        return ""
    return Path(os.path.relpath(path, out)).as_posix() if out is not None else str(path)


__all__ = ["DEMO_PRESET", "DemoItem", "DemoResult", "demo_recipes", "render_report", "run_demo"]
