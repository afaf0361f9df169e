"""The tree shows the flow: no module imports one later in the flow, and no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rhcloud"
FLOW = ("catalog", "ingest", "climatology", "regrid", "ensemble", "evaluate", "drivers",
        "report", "outputs")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The rhcloud modules ``name`` imports (at the top or inside functions)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES and t != name}
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def test_the_stages_are_the_flow():
    stages = {p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__"}
    assert stages == set(FLOW)


@pytest.mark.parametrize("stage", FLOW)
def test_no_stage_imports_a_later_one(stage):
    later = {f"rhcloud.stages.{s}" for s in FLOW[FLOW.index(stage) + 1:]}
    assert not GRAPH[f"rhcloud.stages.{stage}"] & later


@pytest.mark.parametrize("layer", ["core", "storage", "products", "drivers"])
def test_libraries_never_import_the_run(layer):
    """core (pure), storage, the product readers and the statistics engine know nothing of
    the stages, the pipeline or the CLI; core knows no configuration and no I/O layer."""
    banned = ("rhcloud.stages", "rhcloud.pipeline", "rhcloud.cli", "rhcloud.cluster")
    if layer == "core":
        banned += ("rhcloud.config", "rhcloud.storage", "rhcloud.products", "rhcloud.drivers")
    for name, deps in GRAPH.items():
        if name.startswith(f"rhcloud.{layer}"):
            bad = {d for d in deps if d.startswith(banned)}
            assert not bad, f"{name} imports {bad}"


def test_no_import_cycle():
    """Depth-first search over the import graph (the package's ``__init__`` re-exports the
    API and is left out: nothing inside imports ``rhcloud`` itself)."""
    graph = {k: v - {"rhcloud"} for k, v in GRAPH.items() if k != "rhcloud"}
    assert all("rhcloud" not in v for k, v in GRAPH.items() if k != "rhcloud")
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(
                    path[path.index(dep):] + [node, dep]) if dep in path else dep)
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


BENCHMARKS = sorted((ROOT.parent / "benchmarks").glob("*.py"))


def _rhcloud_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every rhcloud import, at any depth, except those in an ``except
    ImportError`` fallback (a benchmark may also run an older layout)."""
    skip = {id(n) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler)
            for n in ast.walk(h)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rhcloud":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "rhcloud"]
    return out


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmarks_import_what_exists(path):
    """A benchmark is run by hand, not by the suite: what it imports from rhcloud must still
    exist after a move, or the numbers in docs/benchmarks.md cannot be re-measured."""
    import importlib

    for module, names in _rhcloud_imports(ast.parse(path.read_text())):
        mod = importlib.import_module(module)
        missing = [n for n in names if not hasattr(mod, n)
                   and importlib.util.find_spec(f"{module}.{n}") is None]
        assert not missing, f"{path.name}: {module} has no {missing}"
