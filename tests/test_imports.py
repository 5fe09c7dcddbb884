"""The package layout holds: no import loops, and each layer imports only those below.

Imports are read with ``ast`` from the source (deferred imports inside
functions included: a loop through one still breaks whoever imports first).
Layers, bottom up: ``unet`` (the model, knowing nothing of maps or clusters),
``cluster`` (the stages), ``jobs`` (entry points). The seeded sample data in
``cluster.sample`` serve the demo, tests and benchmarks, never a production run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("unet", "cluster", "jobs")
# What the top of cluster/ may hold beside the stage subpackages: the base
# exception, and the plan, which spans every stage (items, tiles, GPU time, map bytes).
CLUSTER_TOP = {"__init__.py", "errors.py", "plan.py"}


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports_of(path: Path, name: str, known: Iterable[str]) -> set[str]:
    """The project modules ``path`` imports, wherever in the file the import is."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` imports the module pkg.mod, not just pkg.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        found.update(t for t in map(resolve, targets) if t and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, name, files) for name, path in files.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules (or one importing
    itself), as a sorted list: Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in graph.get(node, ()):
                    found.append(sorted(group))
    return found


def test_the_cycle_finder_finds_loops():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_deferred_and_from_imports_are_seen(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from pkg import sub\nimport pkg.other.deep\n\ndef f():\n    from pkg.sub import x\n"
    )
    known = {"pkg", "pkg.sub", "pkg.other", "pkg.m"}
    assert imports_of(source, "pkg.m", known) == {"pkg.sub", "pkg.other"}


def test_no_import_loops():
    loops = cycles(import_graph())
    assert not loops, "import loops: " + "; ".join(" <-> ".join(group) for group in loops)


@pytest.mark.parametrize(
    ("package", "forbidden"), [("unet", ("cluster", "jobs")), ("cluster", ("jobs",))]
)
def test_layers_import_only_downwards(package, forbidden):
    bad = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in forbidden
    ]
    assert not bad, bad


def test_production_code_never_imports_the_sample_data():
    allowed = ("cluster.sample", "jobs.demo", "jobs.sample")
    bad = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if not module.startswith(allowed)
        for target in targets
        if target.startswith("cluster.sample")
    ]
    assert not bad, bad


def test_cluster_is_laid_out_by_stage():
    top = {p.name for p in (ROOT / "cluster").glob("*.py")}
    assert top <= CLUSTER_TOP, f"modules outside a stage: {sorted(top - CLUSTER_TOP)}"
    stages = [p for p in (ROOT / "cluster").iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in stages} >= {"imagery", "tiles", "predict", "maps", "storage", "sample"}
    for stage in stages:
        doc = ast.get_docstring(ast.parse((stage / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) >= 2, f"{stage.name}/__init__.py: say what it does"


def test_tests_mirror_the_packages():
    """Each test folder has a package folder of the same path."""
    for folder in (ROOT / "tests").rglob("*"):
        if folder.is_dir() and any(folder.glob("test_*.py")) and folder != ROOT / "tests":
            relative = folder.relative_to(ROOT / "tests")
            assert (ROOT / relative).is_dir() or relative.parts[0] == "infra", relative
