"""The built wheel contains every subpackage of core/ and plugins/ (pyproject lists them by hand)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _expected_packages() -> set[str]:
    pkgs = set()
    for init in (ROOT / "core").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT / "core")
        pkgs.add(".".join(("polydiff", *rel.parts)) if rel.parts else "polydiff")
    for plugin in (ROOT / "plugins").iterdir():
        if not (plugin / "__init__.py").exists():
            continue
        for init in plugin.rglob("__init__.py"):
            rel = init.parent.relative_to(plugin)
            pkgs.add(".".join((f"polydiff_{plugin.name}", *rel.parts)))
    return {p for p in pkgs if "__pycache__" not in p}


def test_wheel_contains_every_subpackage(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-2000:]}")
    wheels = list(tmp_path.glob("polydiff-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    missing = _expected_packages() - in_wheel
    assert not missing, f"subpackages missing from the wheel (add them to [tool.setuptools] packages): {sorted(missing)}"
    assert "polydiff/py.typed" in names
