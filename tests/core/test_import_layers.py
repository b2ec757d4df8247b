"""The core is a layered import graph (DESIGN.md §3, "Import direction").

Every module under ``core/`` (package ``polydiff``) is parsed with :mod:`ast`; *every* import
statement counts — module level or inside a function, class or ``try`` block — except those under an
``if TYPE_CHECKING:`` block (they never run, so they cannot create an import cycle; annotations may
name a higher layer's types). Relative imports are resolved to absolute module names, and
``from . import x`` / ``from .pkg import x`` resolves to the submodule ``pkg.x`` when ``x`` is one.
The graph is restricted to ``polydiff.*`` modules.

Importing ``polydiff.a.b`` first runs ``polydiff/a/__init__.py``, so it also counts as importing the
package ``polydiff.a`` — except from inside ``polydiff.a`` itself (a package's own modules import
their siblings; the package ``__init__`` re-exports them) and except for the root ``polydiff``:
its ``__init__`` is the façade at the top that re-exports the public API and wires the layers
together (it is the only module allowed to, see ``LAYERS``).

Two rules:

* no cycle (strongly connected component of more than one module, or a module importing itself);
* no upward edge: a module imports only modules of its own layer or lower ones (table ``LAYERS``).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "polydiff"
CORE = Path(importlib.util.find_spec(PACKAGE).origin).parent  # core/ in this repository

#: bottom (0) to top. A module's layer is that of the longest prefix in this table that names it
#: (``polydiff.samplers`` covers ``polydiff.samplers.euler``; ``polydiff`` itself is the top façade).
LAYERS: dict[str, int] = {
    # 0: plain data and errors
    "polydiff.errors": 0,
    "polydiff.types": 0,
    "polydiff.state": 0,
    "polydiff.registry": 0,
    "polydiff._version": 0,
    "polydiff.seeding": 0,
    "polydiff.progress": 0,
    # 1: how data and noise levels are described
    "polydiff.schedules": 1,
    "polydiff.spaces": 1,
    # 2: forward processes
    "polydiff.processes": 2,
    # 3: predictions, losses, the denoiser
    "polydiff.parameterisation": 3,
    "polydiff.losses": 3,
    "polydiff.denoiser": 3,
    # 4: what uses a model
    "polydiff.guidance": 4,
    "polydiff.samplers": 4,
    "polydiff.likelihood": 4,
    # 5: modality recipes, configuration, training
    "polydiff.recipes": 5,
    "polydiff.config": 5,
    "polydiff.training": 5,
    "polydiff.sample_files": 5,
    # 6: plugin hooks and the plugin manager (fills the registries below it)
    "polydiff.hookspecs": 6,
    "polydiff.plugins": 6,
    "polydiff.builtin_plugin": 6,
    # 7: user-facing entry points
    "polydiff.cli": 7,
    "polydiff.demo": 7,
    "polydiff.scaffold": 7,
    # 8: may import anything
    "polydiff.testing": 8,
    "polydiff": 8,  # the package façade re-exports the public API
}

LAYER_NAMES = {
    0: "errors/types/state/registry",
    1: "schedules/spaces",
    2: "processes",
    3: "parameterisation/losses/denoiser",
    4: "guidance/samplers/likelihood",
    5: "recipes/config/training",
    6: "hookspecs/plugins",
    7: "cli/demo/scaffold",
    8: "testing/package façade",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the body of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The ``polydiff.*`` modules one import statement imports (resolved, restricted to ``known``)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
        return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level > 1:
            base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source != PACKAGE and not source.startswith(PACKAGE + "."):
        return set()
    out = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        out.add(sub if sub in known else source)
    return out


def _with_parent_packages(target: str, importer: str, known: set[str]) -> set[str]:
    """``target`` and the packages whose ``__init__`` importing it runs (not the root, not the importer's own)."""
    out = {target} if target != importer else set()
    parts = target.split(".")
    for i in range(2, len(parts)):
        name = ".".join(parts[:i])
        if name in known and name != importer and not importer.startswith(name + "."):
            out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _imports(tree):
            for target in _targets(module, is_package, node, known):
                # an unknown polydiff.x (e.g. a typo) resolves to its nearest known package
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                for implied in _with_parent_packages(target, module, known):
                    graph[module].add(implied)
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def _cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Strongly connected components of more than one module (Tarjan): ``(members, one concrete cycle)``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[set[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(sorted(scc), _one_cycle(graph, scc)) for scc in sccs]


def _one_cycle(graph: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``scc`` (breadth-first inside the component)."""
    start = min(scc)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & scc):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(scc)  # pragma: no cover - an SCC always has a cycle


def test_every_core_module_has_a_layer():
    missing = [m for m in _modules() if not any(m == p or m.startswith(p + ".") for p in LAYERS)]
    assert missing == [], f"modules with no layer in LAYERS: {missing}"


def test_the_graph_sees_function_local_and_relative_imports():
    """The parser itself: the relative and ``from . import submodule`` forms resolve."""
    graph = _graph()
    assert "polydiff.errors" in graph["polydiff.registry"]
    assert "polydiff.samplers.api" in graph["polydiff.samplers"]
    assert "polydiff.schedules" in graph["polydiff.processes"]


def test_the_parser_on_a_snippet():
    """Function-local, class-level and ``try`` imports count; ``if TYPE_CHECKING:`` ones do not."""
    src = """
from typing import TYPE_CHECKING
from . import registry, not_a_module
from ..processes import get
import polydiff.spaces.dense, torch
if TYPE_CHECKING:
    from ..cli import main
else:
    from .. import errors
def f():
    from ..plugins import registries
class C:
    def g(self):
        try:
            from .. import hookspecs
        except ImportError:
            pass
"""
    known = {"polydiff", "polydiff.samplers", "polydiff.samplers.registry", "polydiff.processes", "polydiff.spaces",
             "polydiff.spaces.dense", "polydiff.cli", "polydiff.plugins", "polydiff.hookspecs", "polydiff.errors"}
    got = set()
    for node in _imports(ast.parse(src)):
        got |= _targets("polydiff.samplers.x", False, node, known)
    assert got == {"polydiff.samplers.registry", "polydiff.samplers", "polydiff.processes", "polydiff.spaces.dense",
                   "polydiff.errors", "polydiff.plugins", "polydiff.hookspecs"}
    assert _with_parent_packages("polydiff.spaces.dense", "polydiff.samplers.x", known) == {
        "polydiff.spaces.dense", "polydiff.spaces"}
    assert _with_parent_packages("polydiff.samplers.registry", "polydiff.samplers.x", known) == {
        "polydiff.samplers.registry"}


def test_no_import_cycle():
    cycles = _cycles(_graph())
    report = [f"{len(members)} modules in one cycle, e.g. {' -> '.join(cycle)}; all: {', '.join(members)}"
              for members, cycle in cycles]
    assert cycles == [], "import cycles in core/:\n" + "\n".join(report)


def test_no_upward_import():
    bad = []
    for module, targets in sorted(_graph().items()):
        lo = _layer(module)
        for target in sorted(targets):
            hi = _layer(target)
            if hi > lo:
                bad.append(f"{module} (layer {lo}: {LAYER_NAMES[lo]}) imports {target} "
                           f"(layer {hi}: {LAYER_NAMES[hi]})")
    assert bad == [], f"{len(bad)} upward imports in core/:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(set(LAYERS.values())))
def test_layer_names_cover_the_table(layer):
    assert layer in LAYER_NAMES
