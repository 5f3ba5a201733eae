"""The layout contract of docs/design.md section 5: packages import downward only, no package-level import
cycle, only the CLI imports the pipeline, and modules stay small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "lab_v10" / "src"
# Layer of each package or top-level module: an import may only reach a lower or equal layer.
LAYERS = {
    "errors": 0, "config": 0, "config_loading": 0,
    "data": 1,
    "features": 2,
    "dataset": 3,
    "baselines": 4, "options": 4,
    "models": 5,
    "books": 6,
    "eval": 7,
    "pipeline": 8,
    "cli": 9,
}


def _unit(path: Path) -> str:
    """The package (or top-level module) a file of lab_v10/src belongs to."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports() -> dict[str, set[tuple[str, str]]]:
    """unit -> {(imported unit, importing file)} for every ``lab_v10.src.X`` import (function-level included)."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lab_v10.src"):
                parts = node.module.split(".")
                names = [parts[2]] if len(parts) > 2 else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[2] for a in node.names if a.name.startswith("lab_v10.src.")]
            for name in names:
                if name != unit:
                    edges.setdefault(unit, set()).add((name, str(path.relative_to(SRC))))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert units <= set(LAYERS), f"give these a layer in LAYERS (docs/design.md section 5): {units - set(LAYERS)}"


def test_packages_import_downward_only():
    upward = [f"{where}: {unit} imports {target}" for unit, targets in _imports().items()
              for target, where in targets if LAYERS[target] > LAYERS[unit]]
    assert not upward, "imports that reach up a layer:\n" + "\n".join(sorted(upward))


def test_no_package_level_import_cycle():
    graph = {unit: {t for t, _ in targets} for unit, targets in _imports().items()}
    visiting, done = set(), set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in visiting:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(unit):] + [unit]))
        if unit in done:
            return
        visiting.add(unit)
        for target in graph.get(unit, ()):
            visit(target, path + [unit])
        visiting.discard(unit)
        done.add(unit)

    for unit in graph:
        visit(unit, [])


def test_only_the_cli_imports_the_pipeline():
    root = SRC.parents[1]
    importers = []
    for path in sorted([*SRC.rglob("*.py"), *(root / "scripts").glob("*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                hit = node.module == "lab_v10.src.pipeline" or (
                    node.module == "lab_v10.src" and any(a.name == "pipeline" for a in node.names))
                if hit:
                    importers.append(str(path.relative_to(root)))
    assert set(importers) <= {"lab_v10/src/cli.py"}, importers


def test_no_module_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"split these modules (docs/design.md section 7): {long}"
