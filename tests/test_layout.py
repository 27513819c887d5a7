"""The package layout is the architecture: layers import only downwards, and nothing imports in a circle.

Every ``import`` in every module of ``mpi_enum`` is read with :mod:`ast` (function-level
imports included, since a lazy import is still a dependency).  The rules are those the
subpackages' docstrings state; README "Architecture" shows the same picture.
"""
from __future__ import annotations

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mpi_enum")

# layer -> the mpi_enum layers it may import (besides itself and the base modules)
BASE = {"mpi_enum", "mpi_enum.errors", "mpi_enum.console", "mpi_enum.options"}
ALLOWED = {
    "model": set(),
    "loaders": {"model"},
    "engine": {"model"},
    "io": {"model", "engine.work"},
    "parallel": {"model", "engine", "io"},
    "post": {"model", "loaders", "io"},
    "geometry": {"model", "io", "post.geometry", "post.points"},
    "api": {"model", "loaders", "engine", "io", "parallel"},
    "cli": {"model", "loaders", "engine", "io", "parallel", "post", "geometry", "api"},
    "base": set(),
}
# third-party packages that must stay out of a layer
FORBIDDEN_EXTERNAL = {
    "model": {"mpi4py", "h5py"},
    "loaders": {"mpi4py", "h5py"},
    "engine": {"mpi4py", "h5py"},
    "post": {"mpi4py"},
    "geometry": {"mpi4py"},
}


def _modules():
    out = {}
    for root, _dirs, files in os.walk(PKG):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
            if rel.endswith(".__init__"):
                rel = rel[: -len(".__init__")]
            out[rel] = path
    return out


def _imports(mod, path, is_pkg):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    pkg = mod if is_pkg else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for a in node.names:  # "from . import verify" names a module
                found.add(f"{target}.{a.name}")
    return found


def _layer(mod):
    parts = mod.split(".")
    if mod == "mpi_enum.__main__":
        return "cli"
    if mod in BASE or len(parts) == 1:
        return "base"
    name = parts[1]
    return name if name in ALLOWED else "base"


def _graph():
    mods = _modules()
    graph = {}
    ext = {}
    for mod, path in mods.items():
        imps = _imports(mod, path, path.endswith("__init__.py"))
        graph[mod] = {i for i in imps if i in mods and i != mod}
        ext[mod] = {i.split(".")[0] for i in imps if not i.startswith("mpi_enum")}
    return mods, graph, ext


def test_every_module_has_a_docstring():
    mods = _modules()
    missing = [m for m, p in mods.items()
               if not ast.get_docstring(ast.parse(open(p, encoding="utf-8").read())) and not m.endswith("__main__")]
    assert not missing, f"modules without a docstring saying what they own: {missing}"


def test_layers_import_only_downwards():
    _mods, graph, ext = _graph()
    bad = []
    for mod, deps in graph.items():
        lay = _layer(mod)
        for dep in deps:
            dl = _layer(dep)
            if dl == "base" or dl == lay:
                continue
            sub = ".".join(dep.split(".")[1:3])
            if dl in ALLOWED[lay] or sub in ALLOWED[lay]:
                continue
            bad.append(f"{mod} ({lay}) imports {dep} ({dl})")
        for pkg in FORBIDDEN_EXTERNAL.get(lay, ()):
            if pkg in ext[mod]:
                bad.append(f"{mod} ({lay}) imports {pkg}")
    assert not bad, "layer violations:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    _mods, graph, _ext = _graph()
    # a package's __init__ importing its own submodules is not a cycle of the architecture
    edges = {m: {d for d in deps if not (m == d.rsplit(".", 1)[0] or d == m.rsplit(".", 1)[0])}
             for m, deps in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("limit", [500])
def test_modules_stay_small(limit):
    """No module over ~500 lines unless it says why (a line 'Longer than 500 lines because ...')."""
    long = []
    for mod, path in _modules().items():
        text = open(path, encoding="utf-8").read()
        if text.count("\n") > limit and "Longer than 500 lines because" not in text:
            long.append(f"{mod} ({text.count(chr(10))} lines)")
    assert not long, f"modules over {limit} lines without a stated reason: {long}"
