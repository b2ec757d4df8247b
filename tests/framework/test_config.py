"""Typed configs: layering, TOML-literal parsing, validation messages, TOML round trips."""

from __future__ import annotations

import dataclasses
import math
import tomllib

import pytest

from polydiff.config import diff_configs, load_config, resolve_config, save_config, toml_dumps
from polydiff.errors import ConfigError

from framework_fakes import FakeRecipe


@pytest.fixture
def recipe():
    return FakeRecipe()


def test_layers_apply_in_order(recipe, tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[model]\nwidth = 16\n[train]\nlr = 0.01\n"steps" = 7\n')
    cfg = resolve_config(recipe, preset="tiny", config_file=f, overrides=["train.steps=9", "data.n=5"])
    assert cfg.model.width == 16  # preset 4, file 16
    assert cfg.train.steps == 9  # preset 3, file 7, --set 9
    assert cfg.train.lr == 0.01 and cfg.data.n == 5
    assert cfg.train.batch_size == recipe.config_class().train.batch_size  # untouched default
    assert resolve_config(recipe, preset="tiny").train.steps == 3


def test_set_values_are_toml_literals_coerced_to_the_field_type(recipe):
    cfg = resolve_config(recipe, overrides=[
        "train.lr=1e-3", "train.bf16=true", "model.betas=[0.5, 0.25]", "data.path=my data.csv",
        "data.kind=ring", "train.compile=yes", "train.grad_clip=2", "data.n=8.0"])
    assert cfg.train.lr == 1e-3 and cfg.train.bf16 is True and cfg.train.compile is True
    assert cfg.model.betas == (0.5, 0.25) and isinstance(cfg.model.betas, tuple)
    assert cfg.data.path == "my data.csv" and cfg.data.kind == "ring"
    assert cfg.train.grad_clip == 2.0 and isinstance(cfg.train.grad_clip, float)
    assert cfg.data.n == 8 and isinstance(cfg.data.n, int)
    # a str field keeps the text even when it parses as another TOML type; Optional accepts none
    assert resolve_config(recipe, overrides=["data.path=123"]).data.path == "123"
    assert resolve_config(recipe, overrides=["data.path=x", "data.path=none"]).data.path is None


@pytest.mark.parametrize("override, message", [
    ("model.widht=3", "unknown config key 'model.widht' (--set); valid keys in 'model': width, betas"),
    ("nope=1", "valid keys at the top level: data, model, train, sample"),
    ("train.steps=abc", "config key 'train.steps': expected int, got 'abc'"),
    ("data.n=2.5", "config key 'data.n': expected int, got 2.5"),
    ("train.bf16=maybe", "config key 'train.bf16': expected bool"),
    ("data.kind=square", "config key 'data.kind': expected one of 'line', 'ring', got 'square'"),
    ("model.betas=[1]", "config key 'model.betas': expected 2 items"),
    ("model.width.x=1", "config key 'model.width' is a value of type int, not a section"),
    ("train.lr", "--set expects key=value"),
])
def test_bad_overrides_name_the_key(recipe, override, message):
    with pytest.raises(ConfigError) as err:
        resolve_config(recipe, overrides=[override])
    assert message in str(err.value)


def test_unknown_preset_lists_the_presets(recipe):
    with pytest.raises(ConfigError, match="has no preset 'huge'; presets: tiny"):
        resolve_config(recipe, preset="huge")


def test_config_file_errors_name_the_file(recipe, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(recipe, config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nwidth = 1\n")
    with pytest.raises(ConfigError, match="bad.toml.*not valid TOML"):
        resolve_config(recipe, config_file=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[model]\ndepth = 3\n")
    with pytest.raises(ConfigError, match=r"'model.depth' \(.*unknown.toml\)"):
        resolve_config(recipe, config_file=unknown)


def test_save_and_load_round_trip(recipe, tmp_path):
    cfg = resolve_config(recipe, overrides=["data.path=a \"quoted\" \\ path\n\twith é", "model.betas=[0.9, 0.999]",
                                            "train.lr=3.0000000000000004e-4"])
    path = save_config(cfg, tmp_path / "run" / "config.toml", header={"recipe": recipe.name})
    assert tomllib.loads(path.read_text())["recipe"] == recipe.name
    assert load_config(recipe, path) == cfg
    # None is left out of the file and restored; non-default values survive
    cfg2 = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=None, n=3))
    save_config(cfg2, path)
    assert load_config(recipe, path) == cfg2
    assert diff_configs(cfg, cfg2) == ["data.n", "data.path"]


def test_toml_writer_values():
    data = {"a": 1, "b": [1.5, -2], "c": {"d": True, "e": {"f": "x"}}, "inf": math.inf, "s": "\u0001", "n": None,
            "key with space": 0}
    back = tomllib.loads(toml_dumps(data))
    assert back == {k: v for k, v in data.items() if v is not None}
