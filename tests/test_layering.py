"""The package's imports point down its layers: data -> models -> strategies -> training ->
(labels, analysis) -> pipelines -> cli. An import against them fails here, naming the file."""

from __future__ import annotations

import ast
from pathlib import Path

import ctrdistill

PACKAGE = Path(ctrdistill.__file__).parent
# Utilities every layer may use; then the layers from the bottom up. Packages on one level
# (labels, analysis, serving) may not import each other.
LEVELS: list[set[str]] = [
    {"errors", "config", "overrides", "files", "flags", "storage", "rundir", "progress",
     "version"},
    {"data"},
    {"models"},
    {"strategies"},
    {"training"},
    {"labels", "analysis", "serving"},
    {"pipelines"},
    {"cli", "__init__"},
    {"__main__"},
]
LEVEL = {unit: level for level, units in enumerate(LEVELS) for unit in units}


def unit_of(module: str) -> str:
    """`ctrdistill.models.zoo.dnn` -> `models`; `ctrdistill` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ctrdistill import in a file, function-local ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] == "ctrdistill"]
    return found


def test_every_module_belongs_to_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert units <= set(LEVEL), f"modules outside every layer: {sorted(units - set(LEVEL))}"


def test_imports_point_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for line, module in imports(path):
            target = unit_of(module)
            if target == source:
                continue
            if LEVEL[target] > LEVEL[source] or (LEVEL[target] == LEVEL[source]
                                                 and LEVEL[source] > 0):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_check_catches_an_upward_import(tmp_path):
    """The walker itself: an import from models up to training is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ctrdistill.training.trainer import Trainer\n")
    assert imports(bad) == [(2, "ctrdistill.training.trainer")]
    assert LEVEL[unit_of("ctrdistill.training.trainer")] > LEVEL["models"]
