"""The house's layering (DESIGN.md, README "Development"): one-way imports between the packages
of aubench and no import cycle between its modules, imports inside functions included.

The rules are data (:data:`FORBIDDEN`), read off every ``import`` statement of the package with
``ast``, so an import hidden inside a function counts like one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aubench"

#: package → the aubench packages it must never import ("*" = anything of aubench outside it).
#: ``aubench`` (the root: ``aubench.evaluate``), ``aubench.version``, ``aubench.io`` and
#: ``aubench.cli`` are packages too.
FORBIDDEN: dict[str, set[str]] = {
    "faces": {"*"},
    "metrics": {"*"},
    "data": {"bench", "report", "cli", "train", "models", "explain"},
    "landmarks": {"bench", "report", "cli", "train", "models", "explain", "data"},
    "models": {"bench", "report", "cli", "train", "data"},
    "explain": {"bench", "report", "cli", "train"},
    "train": {"bench", "report", "cli"},
    "report": {"models", "train", "explain", "data", "cli"},
    "bench": {"cli"},
}


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` below ``root`` (``__init__`` = the package)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[tuple[str, int]]:
    """The aubench modules that module ``name`` imports, with the line of each import: every
    ``import``/``from … import`` anywhere in the file, relative imports resolved, and ``from
    package import name`` taken as the submodule when ``name`` is one."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else base for t in targets]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add((target, node.lineno))
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[tuple[str, int]]]:
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def package_of(module: str) -> str:
    """``aubench.faces.heatmaps`` → ``faces``, ``aubench.cli`` → ``cli``, ``aubench`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layering_violations(
    graph: dict[str, set[tuple[str, int]]], rules: dict[str, set[str]] = FORBIDDEN
) -> list[str]:
    """One line per import that breaks ``rules``: ``module:line imports target (why)``."""
    bad = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        forbidden = rules.get(source, set())
        for target, line in sorted(targets):
            package = package_of(target)
            if package == source:
                continue
            if "*" in forbidden or package in forbidden:
                bad.append(f"{module}:{line} imports {target} ({source} must not import {package})")
    return bad


def import_cycles(graph: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {module: sorted({t for t, _ in targets}) for module, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_import_cycle_between_modules():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions included):\n" + "\n".join(
        " ↔ ".join(c) for c in cycles
    )


def test_imports_point_one_way():
    bad = layering_violations(import_graph())
    assert not bad, "imports against the layering of DESIGN.md:\n" + "\n".join(bad)


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert len(graph) > 50
    # a module-level absolute import, a package-from import and an import inside a function
    assert any(t == "aubench.faces.heatmaps" for t, _ in graph["aubench.data.batch"])
    assert any(t.startswith("aubench.bench") for t, _ in graph["aubench.cli"])  # in functions


@pytest.fixture
def toy_package(tmp_path):
    """A three-module package with one back-import hidden in a function."""
    root = tmp_path / "aubench"
    for folder in ("faces", "bench"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "faces" / "maps.py").write_text(
        "import math\n\ndef f():\n    from ..bench import run\n"
    )
    (root / "bench" / "run.py").write_text("from aubench.faces.maps import f\n")
    return root


def test_a_back_import_inside_a_function_is_caught(toy_package):
    graph = import_graph(toy_package)
    assert graph["aubench.faces.maps"] == {("aubench.bench.run", 4)}
    assert layering_violations(graph) == [
        "aubench.faces.maps:4 imports aubench.bench.run (faces must not import bench)"
    ]
    assert import_cycles(graph) == [["aubench.bench.run", "aubench.faces.maps"]]
