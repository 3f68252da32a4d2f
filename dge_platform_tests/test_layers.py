"""The house rules of the package (``dge_platform/__init__.py``), read from the source.

Every ``import`` counts, function-local ones included: a lazy import hides a dependency from
the reader, not from the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dge_platform"

LAYERS = {
    "_core": 0, "resources": 0,
    "study": 1,
    "storage": 2,
    "readers": 3,
    "de": 4,
    "bulk": 5, "counting": 5, "screen": 5, "singlecell": 5, "enrichment": 5, "cross_study": 5,
    "activity": 5,
    "validation": 6,
    "outputs": 7,
    "pipelines": 8, "sim": 8, "explorer": 8,
    "defs": 9, "definitions": 9, "runner": 9, "registry": 9, "cli": 9,
}
"""Layer of each package or top-level module: a module imports only from lower layers and
from its own package."""
SIBLINGS = {"bulk", "counting", "screen", "singlecell", "enrichment", "cross_study", "activity"}
"""The kind and concern packages: never importing each other."""
DAGSTER_ALLOWED = {"defs", "definitions", "runner"}
ENGINE_MAY_IMPORT = {"_core", "de", "study.replicates"}
"""The DE engine knows no study.yaml: besides itself and the core, only the technical-replicate
helpers of the study format."""
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module this file imports (``dge_platform.`` stripped; others verbatim), with the
    line, wherever the import statement stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import name``: the module ``pkg.name`` when there is one (resolved
            # by _internal_edges), else ``pkg`` itself.
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _internal_edges() -> dict[str, set[str]]:
    """module -> the platform modules it imports (``from pkg import module`` resolved)."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported, _ in _imports(path):
            if imported.startswith("dge_platform."):
                target = imported.removeprefix("dge_platform.")
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        edges[name] = targets
    return edges


def _unit(module: str) -> str:
    return module.split(".")[0]


def test_every_package_has_a_layer():
    assert {_unit(m) for m in _modules()} - {""} <= set(LAYERS) | {"__init__"}


def test_imports_point_down_the_layers():
    wrong = []
    for source, targets in _internal_edges().items():
        if source == "":  # dge_platform/__init__.py
            continue
        for target in targets:
            here, there = _unit(source), _unit(target)
            if here != there and LAYERS[there] >= LAYERS[here] and LAYERS[here] < 9:
                wrong.append(f"{source} (layer {LAYERS[here]}) imports {target} "
                             f"(layer {LAYERS[there]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_kind_packages_never_import_each_other():
    wrong = [f"{s} imports {t}" for s, targets in _internal_edges().items() for t in targets
             if _unit(s) in SIBLINGS and _unit(t) in SIBLINGS and _unit(s) != _unit(t)]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_engine_knows_no_study_yaml():
    wrong = [f"{s} imports {t}" for s, targets in _internal_edges().items() if _unit(s) == "de"
             for t in targets if _unit(t) not in ENGINE_MAY_IMPORT and t not in ENGINE_MAY_IMPORT]
    assert not wrong, "\n".join(sorted(wrong))


def test_only_the_top_layer_imports_dagster():
    wrong = [f"{name}:{line}" for name, path in _modules().items()
             if _unit(name) not in DAGSTER_ALLOWED
             for imported, line in _imports(path) if imported.split(".")[0].startswith("dagster")]
    assert not wrong, "Dagster imported outside defs/, definitions, runner: " + ", ".join(wrong)


def test_no_import_cycles():
    edges = _internal_edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("rule", ["layers", "cycles"])
def test_the_rules_catch_a_violation(tmp_path, monkeypatch, rule):
    """The checks above fail on a house that breaks them (so they cannot pass vacuously)."""
    fake = tmp_path / "dge_platform"
    (fake / "_core").mkdir(parents=True)
    (fake / "storage").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "_core" / "__init__.py").write_text("")
    (fake / "storage" / "__init__.py").write_text("")
    if rule == "layers":
        (fake / "_core" / "a.py").write_text("def f():\n    from dge_platform.storage import b\n")
        (fake / "storage" / "b.py").write_text("")
        check = test_imports_point_down_the_layers
    else:
        (fake / "storage" / "a.py").write_text("from dge_platform.storage.b import x\n")
        (fake / "storage" / "b.py").write_text("def g():\n    from dge_platform.storage import a\n")
        check = test_no_import_cycles
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    with pytest.raises(AssertionError):
        check()


def test_validation_imports_neither_the_de_stack_nor_dagster():
    """``dge validate`` stays light: no DESeq2 engine, PyDESeq2 or Dagster behind it."""
    import subprocess
    import sys

    code = ("import sys, dge_platform.validation\n"
            "print(sorted(m for m in ('pydeseq2', 'dagster', 'dge_platform.de.engine') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
