"""The import order of docs/architecture.md, checked on the source with the standard library's ast.

Layers, top to bottom: the command line and API (``styleaxis``), then ``pipelines``, ``index`` and
``eval`` (siblings: none imports another), then ``stylize``, then ``embed``, then ``media``. A module
may import its own package and the layers below it; the root ``styleaxis/__init__.py`` (the version)
may be imported from anywhere. Every import counts, those inside functions included, and no two
modules may import each other, directly or around a loop.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folder -> layer (higher imports lower); folders of one layer are siblings
LAYERS = {"styleaxis": 4, "pipelines": 3, "index": 3, "eval": 3, "stylize": 2, "embed": 1, "media": 0}
ROOT_MODULE = "styleaxis"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every installed folder."""
    found = {}
    for folder in LAYERS:
        if not (ROOT / folder).is_dir():
            continue
        for path in sorted((ROOT / folder).glob("*.py")):
            package = ROOT_MODULE if folder == ROOT_MODULE else f"{ROOT_MODULE}.{folder}"
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
        for sub in sorted(p for p in (ROOT / folder).iterdir() if p.is_dir() and (p / "__init__.py").exists()):
            for path in sorted(sub.glob("*.py")):
                package = f"{ROOT_MODULE}.{sub.name}" if folder == ROOT_MODULE else f"{ROOT_MODULE}.{folder}.{sub.name}"
                found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (a name imported from a package counts as its submodule
    when there is one)."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES and t != name}
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ROOT_MODULE


def test_every_folder_is_known_and_read() -> None:
    expected = {"styleaxis.api", "styleaxis.embed.recipe", "styleaxis.index.build", "styleaxis.stylize.adain"}
    assert expected <= set(MODULES), f"modules read: {sorted(MODULES)}"


def test_imports_follow_the_documented_order() -> None:
    against = []
    for source, targets in GRAPH.items():
        for target in targets:
            if target == ROOT_MODULE:
                continue
            a, b = _folder(source), _folder(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                against.append(f"{source} -> {target} ({a} may not import {b})")
    assert not against, "imports against docs/architecture.md:\n" + "\n".join(sorted(against))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a loop of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
