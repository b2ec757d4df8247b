"""Plugin loading: isolation of failures, strict mode, allow/deny lists, duplicates, every hook."""

from __future__ import annotations

import importlib.metadata
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff import hookimpl, hookspecs
from polydiff.plugins import (
    PluginLoadWarning,
    isolated_plugins,
    plugin_infos,
    plugin_manager,
    registries,
    reset_plugins,
)
from polydiff.registry import BuiltinTable, DuplicateNameError, Registry, UnknownNameError

from framework_fakes import FakePlugin, FakeRecipe

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("register_"))
_counter = itertools.count()


@pytest.fixture
def fresh(monkeypatch):
    """No POLYDIFF_* plugin variables; a fresh plugin state before and after the test."""
    for var in ("POLYDIFF_LOAD_PLUGINS", "POLYDIFF_DISABLE_PLUGINS", "POLYDIFF_STRICT_PLUGINS",
                "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(var, raising=False)
    reset_plugins()
    yield monkeypatch
    reset_plugins()


@pytest.fixture
def fake_eps(fresh, tmp_path):
    """Install in-memory entry points: ``fake_eps({"name": "module source"})``."""
    fresh.syspath_prepend(str(tmp_path))

    def install(plugins: dict[str, str]) -> dict[str, str]:
        eps, modules = [], {}
        for name, source in plugins.items():
            mod = f"pd_fake_{name}_{next(_counter)}"
            (tmp_path / f"{mod}.py").write_text(textwrap.dedent(source))
            eps.append(importlib.metadata.EntryPoint(name=name, value=mod, group="polydiff"))
            modules[name] = mod

        def entry_points(**kw):
            return [ep for ep in eps if kw.get("group") in (None, ep.group)]

        fresh.setattr(importlib.metadata, "entry_points", entry_points)
        reset_plugins()
        return modules

    yield install
    for name in list(sys.modules):
        if name.startswith("pd_fake_"):
            del sys.modules[name]


GOOD = """
from polydiff import hookimpl
from polydiff.recipes import Recipe
import framework_fakes

class Other(framework_fakes.FakeRecipe):
    name = "{name}/points"

@hookimpl
def register_recipes(register):
    register(Other())
"""
BROKEN = "raise RuntimeError('boom at import')\n"


def _infos() -> dict[str, dict]:
    return {i.name: i.to_dict() for i in plugin_infos()}


def test_failing_plugin_is_recorded_and_the_others_load(fake_eps):
    fake_eps({"good": GOOD.format(name="good"), "broken": BROKEN, "good2": GOOD.format(name="good2")})
    with pytest.warns(PluginLoadWarning, match="broken"):
        infos = _infos()
    assert infos["broken"]["status"] == "failed"
    assert infos["broken"]["error"] == "RuntimeError: boom at import"
    assert infos["good"]["status"] == infos["good2"]["status"] == "loaded"
    assert infos["good"]["recipes"] == ["good/points"]
    assert registries().recipes.names() == ["good/points", "good2/points"]
    assert "vp-cosine" in polydiff.processes.names()  # the core keeps working


def test_strict_mode_reraises(fake_eps, monkeypatch):
    fake_eps({"broken": BROKEN})
    monkeypatch.setenv("POLYDIFF_STRICT_PLUGINS", "1")
    with pytest.raises(RuntimeError, match="boom at import"):
        registries()


def test_allow_list_loads_only_the_named_plugins(fake_eps, monkeypatch):
    fake_eps({"a": GOOD.format(name="a"), "b": GOOD.format(name="b"), "broken": BROKEN})
    monkeypatch.setenv("POLYDIFF_LOAD_PLUGINS", "b")
    infos = _infos()
    assert infos["b"]["status"] == "loaded"
    assert infos["a"]["status"] == infos["broken"]["status"] == "blocked"  # broken is never imported
    assert registries().recipes.names() == ["b/points"]


def test_empty_allow_list_loads_no_external_plugin(fake_eps, monkeypatch):
    fake_eps({"a": GOOD.format(name="a")})
    monkeypatch.setenv("POLYDIFF_LOAD_PLUGINS", "")
    assert _infos()["a"]["status"] == "blocked"
    assert registries().recipes.names() == []
    assert _infos()["polydiff"]["status"] == "loaded"  # the core's built-ins always load


def test_deny_list_blocks_through_pluggy(fake_eps, monkeypatch):
    fake_eps({"a": GOOD.format(name="a"), "broken": BROKEN})
    monkeypatch.setenv("POLYDIFF_DISABLE_PLUGINS", "broken, a")
    infos = _infos()
    assert infos["a"]["status"] == infos["broken"]["status"] == "blocked"
    assert "POLYDIFF_DISABLE_PLUGINS" in infos["a"]["error"]
    assert plugin_manager().is_blocked("broken")


def test_duplicate_names_are_an_error_naming_both_plugins(fake_eps):
    fake_eps({"first": GOOD.format(name="same"), "second": GOOD.format(name="same")})
    with pytest.warns(PluginLoadWarning):
        infos = _infos()
    assert infos["first"]["status"] == "loaded"
    assert infos["second"]["status"] == "failed"
    assert "'first'" in infos["second"]["error"] and "'second'" in infos["second"]["error"]
    assert "DuplicateNameError" in infos["second"]["error"]


def test_duplicate_names_raise_in_strict_mode(fake_eps, monkeypatch):
    fake_eps({"first": GOOD.format(name="same"), "second": GOOD.format(name="same")})
    monkeypatch.setenv("POLYDIFF_STRICT_PLUGINS", "1")
    with pytest.raises(DuplicateNameError, match="'first'.*'second'"):
        registries()


def test_a_failing_hook_rolls_back_what_the_plugin_registered(fake_eps):
    fake_eps({"half": """
        from polydiff import hookimpl
        @hookimpl
        def register_processes(register):
            register("half-process", lambda: None)
            raise ValueError("second half broken")
    """})
    with pytest.warns(PluginLoadWarning):
        info = _infos()["half"]
    assert info["status"] == "failed" and info["error"] == "ValueError: second half broken"
    assert "half-process" not in registries().processes


def test_an_unknown_hook_name_is_a_failure(fake_eps):
    fake_eps({"typo": """
        from polydiff import hookimpl
        @hookimpl
        def register_recipe(register):
            pass
    """})
    with pytest.warns(PluginLoadWarning):
        info = _infos()["typo"]
    assert info["status"] == "failed" and "register_recipe" in info["error"]


def test_builtins_register_through_the_same_hooks(fresh):
    regs = registries()
    assert {e.plugin for e in regs.processes.entries()} == {"polydiff"}
    assert set(polydiff.processes.BUILTIN) <= set(regs.processes.by_plugin("polydiff"))
    from polydiff.samplers.registry import BUILTIN

    assert set(BUILTIN) == set(regs.samplers.by_plugin("polydiff"))
    assert polydiff.samplers.names() == sorted(regs.samplers.names())
    assert set(regs.commands.by_plugin("polydiff")) >= {"plugins", "train", "sample", "evaluate", "demo", "new-plugin"}


def test_version_comes_from_the_distribution(fresh, monkeypatch):
    monkeypatch.setenv("POLYDIFF_LOAD_PLUGINS", "")  # listed from metadata, not imported
    infos = _infos()
    real = [ep.name for ep in importlib.metadata.entry_points(group="polydiff")]
    assert real, "the built-in plugins have entry points in pyproject"
    for name in real:
        assert infos[name]["version"] == importlib.metadata.version(infos[name]["distribution"])


def test_registry_unknown_and_listing():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2, plugin="p", description="bee")
    reg.register("a", 1, plugin="q")
    assert reg.names() == ["a", "b"] and reg.get("b") == 2 and reg.as_dict({"z": 0}) == {"z": 0, "a": 1, "b": 2}
    assert reg.describe()[1] == {"name": "b", "plugin": "p", "description": "bee"}
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; known: a, b"):
        reg.get("c")
    with pytest.raises(DuplicateNameError, match="by plugin 'p' and by plugin 'x'"):
        reg.register("b", 3, plugin="x")
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("", 3, plugin="x")


def test_builtin_table_asks_its_source_only_on_a_miss():
    table = BuiltinTable("widget", {"a": 1})
    assert table.lookup("a") == 1 and table.lookup("b") is None and table.names() == ["a"]
    with pytest.raises(DuplicateNameError, match="widget 'a' is registered twice"):
        table.add("a", 2)
    calls = []

    def source():
        calls.append(1)
        return {"b": 2, "a": 1}

    assert table.set_source(source) is None
    assert table.lookup("a") == 1 and calls == []  # a built-in name never asks the source
    assert table.lookup("b") == 2 and table.names() == ["a", "b"] and calls
    assert table.set_source(None) is source and table.lookup("b") is None


def test_a_built_in_name_loads_no_plugin_an_unknown_one_does(fake_eps):
    fake_eps({"broken": BROKEN})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)  # loading the broken plugin would raise here
        assert polydiff.processes.get("vp-cosine").name == "vp-cosine"
        assert polydiff.samplers.get_sampler("euler").name == "euler"
    with pytest.warns(PluginLoadWarning, match="boom at import"), pytest.raises(ValueError, match="known samplers"):
        polydiff.samplers.get_sampler("no-such-sampler")


def test_the_lower_layers_work_without_the_plugin_layer(fresh):
    """``processes`` and ``samplers`` never import ``polydiff.plugins``: without its source they see the built-ins."""

    class P:
        @hookimpl
        def register_processes(self, register):
            register("my-flow", lambda **p: polydiff.processes.gaussian("flow", **p))

    tables = (polydiff.processes.TABLE, polydiff.samplers.registry.TABLE)
    sources = [t.set_source(None) for t in tables]
    try:
        with isolated_plugins(("p", P())) as regs:
            assert "my-flow" in regs.processes
            assert polydiff.processes.names() == sorted(polydiff.processes.BUILTIN)
            assert polydiff.samplers.names() == sorted(polydiff.samplers.registry.BUILTIN)
            assert polydiff.processes.get("flow").name == "flow"
            with pytest.raises(ValueError, match="unknown process 'my-flow'"):
                polydiff.processes.get("my-flow")
    finally:
        for t, source in zip(tables, sources):
            t.set_source(source)
    with isolated_plugins(("p", P())):
        assert polydiff.processes.get("my-flow").name == "flow"


def test_core_commands_are_listed_without_importing_the_cli_first():
    """The built-in plugin gets the CLI's commands through a provider; the CLI is imported on demand."""
    code = ("import json, sys, polydiff.plugins as p; assert 'polydiff.cli' not in sys.modules; "
            "print(json.dumps(p.plugin_infos()[0].registered['commands']))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYDIFF_")}
    env.update(OMP_NUM_THREADS="1", POLYDIFF_LOAD_PLUGINS="")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {"plugins", "train", "sample", "evaluate", "demo", "new-plugin"} <= set(json.loads(proc.stdout))


# -- one test per hook (test_hook_<name>); the meta-test below checks they all exist ---------------


def test_hook_register_processes(fresh):
    class P:
        @hookimpl
        def register_processes(self, register):
            register("my-flow", lambda **p: polydiff.processes.gaussian("flow", **p), description="mine")

    with isolated_plugins(("p", P())) as regs:
        assert regs.processes.entry("my-flow").plugin == "p"
        assert "my-flow" in polydiff.processes.names()
        assert polydiff.processes.get("my-flow").schedule(torch.tensor([0.25])).alpha.item() == pytest.approx(0.75)


def test_hook_register_samplers(fresh):
    from polydiff.samplers import SamplerSpec, get_sampler

    euler = get_sampler("euler")
    spec = SamplerSpec("my-euler", euler.fn, kind="gaussian", description="a copy")

    class P:
        @hookimpl
        def register_samplers(self, register):
            register(spec)

    with isolated_plugins(("p", P())):
        assert get_sampler("my-euler") is spec
        assert "my-euler" in polydiff.samplers.names(polydiff.processes.get("flow"))
    assert "my-euler" not in polydiff.samplers.names()


def test_only_hooks_with_a_reader_exist():
    """Every hook fills a registry the core reads (processes.get, samplers.get_sampler, the CLI's train/sample
    and its command table); hooks nothing read (guidance, backbones, datasets, metrics) were removed."""
    from polydiff import hookspecs
    from polydiff.plugins import REGISTRY_HOOKS

    specs = {n for n in dir(hookspecs) if n.startswith("register_") and hasattr(getattr(hookspecs, n), "polydiff_spec")}
    assert specs == {"register_processes", "register_samplers", "register_recipes", "register_commands"}
    assert {hook for hook, _ in REGISTRY_HOOKS.values()} == specs


def test_a_removed_hook_is_reported_as_a_failure(fake_eps):
    fake_eps({"old": """
        from polydiff import hookimpl
        @hookimpl
        def register_metrics(register):
            pass
    """})
    with pytest.warns(PluginLoadWarning):
        info = _infos()["old"]
    assert info["status"] == "failed" and "register_metrics" in info["error"]


def test_hook_register_recipes(fresh):
    with isolated_plugins(("fake", FakePlugin())) as regs:
        assert isinstance(regs.recipes.get("fake/points"), FakeRecipe)
        assert regs.recipes.entry("fake/points").description == "framework test recipe"


def test_hook_register_recipes_rejects_non_recipes(fresh):
    class P:
        @hookimpl
        def register_recipes(self, register):
            register(object())

    with isolated_plugins() as regs, pytest.warns(PluginLoadWarning, match="expected a polydiff.recipes.Recipe"):
        from polydiff.plugins import register_plugin

        assert register_plugin(P(), "bad").status == "failed"
        assert regs.recipes.names() == []


def test_hook_register_commands(fresh, capsys):
    import typer

    class P:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello_world(name: str = typer.Option("you", "--name")):
                """Say hello."""
                typer.echo(f"hello {name}")

    from polydiff.cli import main

    with isolated_plugins(("p", P())) as regs:
        assert regs.commands.entry("hello-world").description == "Say hello."
        assert main(["hello-world", "--name", "pd"]) == 0
    assert capsys.readouterr().out.strip() == "hello pd"


def test_a_command_clashing_with_a_core_command_fails_the_plugin(fresh):
    class P:
        @hookimpl
        def register_commands(self, cli):
            cli.command("train")(lambda: None)

    with isolated_plugins() as regs:
        from polydiff.plugins import register_plugin

        with pytest.warns(PluginLoadWarning, match="'polydiff' and by plugin 'p'"):
            assert regs.commands.names()
            assert register_plugin(P(), "p").status == "failed"
        assert regs.commands.entry("train").plugin == "polydiff"


# -- meta-tests (datasette style) -------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    assert f"test_hook_{hook}" in globals(), f"add a test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    guide = (REPO / "docs" / "plugin-guide.md").read_text()
    spec_args = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    m = re.search(rf"^###\s+`?{hook}\(([^)]*)\)`?\s*$", guide, flags=re.M)
    assert m, f"docs/plugin-guide.md needs a heading '### {hook}({', '.join(spec_args)})'"
    assert [a.strip() for a in m.group(1).split(",") if a.strip()] == spec_args


def test_plugins_json_in_a_subprocess_honours_the_environment():
    """The real console entry, the real entry points: text disabled, timeseries not in the allow-list."""
    env = {**os.environ, "POLYDIFF_DISABLE_PLUGINS": "text", "POLYDIFF_LOAD_PLUGINS": "text", "OMP_NUM_THREADS": "1"}
    env.pop("POLYDIFF_STRICT_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-m", "polydiff.cli", "plugins", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    infos = {p["name"]: p for p in json.loads(proc.stdout)}
    assert infos["polydiff"]["status"] == "loaded" and "euler" in infos["polydiff"]["samplers"]
    assert infos["text"]["status"] == "blocked" and infos["text"]["recipes"] == []
    assert infos["timeseries"]["status"] == "blocked"
    for p in infos.values():
        assert {"name", "version", "status", "error", "recipes"} <= set(p)


def test_polydiff_plugins_fixture(fresh, polydiff_plugins):
    info = polydiff_plugins(FakePlugin(), "fake")
    assert info.status == "loaded" and info.registered["recipes"] == ["fake/points"]
    assert registries().recipes.names() == ["fake/points"]


def test_autoload_kill_switch(fake_eps, monkeypatch):
    fake_eps({"a": GOOD.format(name="a")})
    monkeypatch.setenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert _infos()["a"]["status"] == "blocked"
    assert registries().recipes.names() == []
