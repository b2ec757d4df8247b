"""pytest11 entry point ``polydiff``: fixtures for tests of polydiff and of its plugins.

Registered in pyproject as ``[project.entry-points.pytest11] polydiff = "polydiff.testing.pytest_plugin"``,
so every project that installs polydiff gets these fixtures. The conformance classes live in
:mod:`polydiff.testing` (import and subclass them).
"""

from __future__ import annotations

import pytest
import torch

#: the seed of :func:`polydiff_generator`
POLYDIFF_TEST_SEED = 0


@pytest.fixture
def polydiff_generator() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :data:`POLYDIFF_TEST_SEED` (fresh for every test)."""
    return torch.Generator().manual_seed(POLYDIFF_TEST_SEED)


@pytest.fixture
def polydiff_generators():
    """A factory: ``polydiff_generators(batch_size, seed=0)`` returns one seeded generator per sample."""
    from .conformance_space import per_sample_generators

    return per_sample_generators


# ---------------------------------------------------------------------------------------------------
# Plugin fixtures (isolated plugin state through polydiff.plugins.isolated_plugins): polydiff_plugins
# (framework) yields register_plugin; plugin_manager yields the isolated pluggy manager.
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def polydiff_plugins():
    """Isolated plugins: only the core's built-ins (no installed entry points), restored after the test.

    Yields ``register(plugin, name) -> PluginInfo`` (a module or an object with ``@hookimpl`` methods);
    read what it registered through ``polydiff.plugins.registries()``.
    """
    from ..plugins import isolated_plugins, register_plugin

    with isolated_plugins():
        yield register_plugin


@pytest.fixture
def plugin_manager():
    """An isolated plugin state for one test: the core's built-ins only, no installed entry points.

    Yields the (loaded) ``pluggy.PluginManager``. Register test plugins with
    ``polydiff.plugins.register_plugin(obj, name)``; ``polydiff.processes.get``, ``polydiff.samplers``
    and ``polydiff.plugins.registries()`` see them until the test ends, when the previous state returns.
    """
    from ..plugins import isolated_plugins
    from ..plugins import plugin_manager as _current_manager

    with isolated_plugins():
        yield _current_manager()
