"""``polydiff new-plugin NAME``: write a working third-party plugin package.

The package (``polydiff-NAME/``) has a ``pyproject.toml`` with the ``polydiff`` entry point, a plugin
module registering one recipe (a 2-D Gaussian mixture learnt by a small MLP denoiser, presets
tiny/small/base), and one test. ``pip install -e polydiff-NAME`` and it shows in ``polydiff plugins``.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from ..errors import UserInputError
from . import templates

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def plugin_names(name: str) -> dict[str, str]:
    """The names derived from a plugin name: distribution, package, entry point, recipe, class prefix."""
    if not NAME_RE.match(name or ""):
        raise UserInputError(f"plugin name {name!r} is not valid: use lowercase letters, digits and single '-' or '_' "
                             "(starting with a letter), e.g. 'spirals'")
    ident = name.replace("-", "_")
    return {
        "name": name,
        "dist": f"polydiff-{name.replace('_', '-')}",
        "package": f"polydiff_{ident}",
        "entry_point": ident,
        "recipe": f"{ident}/mixture",
        "Class": "".join(p.capitalize() for p in ident.split("_")),
    }


def render(name: str) -> dict[str, str]:
    """``{relative path: file text}`` of the package for plugin ``name``."""
    names = plugin_names(name)
    files = {
        "pyproject.toml": templates.PYPROJECT,
        "README.md": templates.README,
        "src/$package/__init__.py": templates.INIT,
        "src/$package/plugin.py": templates.PLUGIN,
        "tests/test_recipe.py": templates.TEST,
    }
    out = {Template(path).substitute(names): Template(text).substitute(names) for path, text in files.items()}
    out[f"src/{names['package']}/recipe.py"] = recipe_source(names)
    return out


def recipe_source(names: dict[str, str]) -> str:
    """The plugin's ``recipe.py``: :mod:`polydiff.testing.toy_recipe` (the maintained example, public API only)
    up to its test-only helpers, with the recipe's class and registry name replaced."""
    text = (Path(__file__).resolve().parent.parent / "testing" / "toy_recipe.py").read_text()
    text = text[: text.index(TOY_CUT)].rstrip() + "\n"
    head = f'"""The {names["recipe"]} recipe of the polydiff plugin {names["dist"]} (made by ``polydiff new-plugin``).\n\n'
    body = text.split("\n\n", 1)[1]  # drop the toy's first docstring line, keep its description of the data
    return (head + body).replace("ToyRecipe", f"{names['Class']}Recipe").replace('"toy/gaussian-mixture"', f'"{names["recipe"]}"')


TOY_CUT = "# -- below: helpers for polydiff's own tests"


def write_plugin(name: str, out: str | Path = ".") -> Path:
    """Write the package into ``out/polydiff-NAME`` (which must not exist or be empty); returns that folder."""
    names = plugin_names(name)
    root = Path(out) / names["dist"]
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserInputError(f"{str(root)!r} already exists and is not empty; choose another --out or NAME")
    for rel, text in render(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


__all__ = ["plugin_names", "render", "write_plugin"]
