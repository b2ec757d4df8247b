"""Fixtures shared by the framework tests."""

from __future__ import annotations

import pytest

from polydiff.cli import main
from polydiff.plugins import isolated_plugins

from framework_fakes import FakePlugin


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` with the fake recipe installed (no entry points)."""
    with isolated_plugins(("fake", FakePlugin())):
        def run(*args):
            code = main([str(a) for a in args])
            out = capsys.readouterr()
            return code, out.out, out.err

        yield run
