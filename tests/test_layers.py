"""The package's layers (docs/architecture.md): a module imports only from its own sub-package and the layers below
it, function-level imports included, so the sub-packages form no cycle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "selfsup"
# Lowest first; a layer may import any layer before it. Leaves: one base error class, options, schedules, machine.
LAYERS = [("options", "schedules", "machine", "errors", "validate"), ("data",), ("models",), ("diagnostics",),
          ("methods",), ("insight",), ("config",), ("eval",), ("engine",), ("sizing",), ("ablate", "web", "demo"),
          ("api", "cli", "print_config", "__init__", "__main__")]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """'file:line imports module' for each import of a higher layer."""
    found = []
    for path in sorted(package.rglob("*.py")):
        unit = path.relative_to(package).with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfsup."):
                other = node.module.split(".")[1]
                if other != unit and RANK[other] > RANK[unit]:
                    found.append(f"{path.relative_to(package)}:{node.lineno} imports {node.module}")
    return found


def test_every_sub_package_has_a_layer():
    units = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), sorted(units - set(RANK))


def test_no_import_runs_up_a_layer():
    assert upward_imports() == []


def test_an_upward_import_is_found(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.py").write_text("def f():\n    from selfsup.engine.pretrain import Trainer\n")
    assert upward_imports(tmp_path) == ["models/x.py:2 imports selfsup.engine.pretrain"]
