"""Shared fixture of the benchmark-script tests: import a script under ``benchmarks/`` as a module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("text/run.py")``: the script, executed once as a module named after its path."""
    cache: dict[str, ModuleType] = {}

    def load(rel: str) -> ModuleType:
        if rel not in cache:
            spec = importlib.util.spec_from_file_location(rel.replace("/", "_").removesuffix(".py"), BENCHMARKS / rel)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod  # dataclasses defined by a script look their module up while it runs
            spec.loader.exec_module(mod)
            cache[rel] = mod
        return cache[rel]

    return load
