"""``lung_diffusers.training`` is the top of the package (issue 16): the data, synthesis and evaluation code a run
needs lives below it, so no module under ``src/`` outside it, and none of the Space, imports it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "src" / "lung_diffusers"
TRAINING = re.compile(r"lung_diffusers\.training(\..*)?")


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the modules ``path`` imports, relative imports resolved, and the strings that name
    modules to import later (``import_module``, lazy exports such as ``"..training.x"``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def absolute(name: str | None, level: int) -> str:
        if not level:
            return name or ""
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - level + 1])
        return f"{base}.{name}" if name else base

    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module, node.level)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            relative = re.fullmatch(r"(\.+)([\w.]+)", node.value)
            if relative:
                names.add(absolute(relative.group(2), len(relative.group(1))))
            elif re.fullmatch(r"[\w.]+", node.value):
                names.add(node.value)
    return names


def test_nothing_outside_the_training_package_imports_it():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("lung_diffusers", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        if TRAINING.fullmatch(module):
            continue
        offenders += [f"{module} imports {name}" for name in imported_modules(path, module) if TRAINING.fullmatch(name)]
    for path in sorted((REPO_ROOT / "spaces").rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT / "spaces").with_suffix("").parts)
        offenders += [f"spaces/{module} imports {name}" for name in imported_modules(path, module) if TRAINING.fullmatch(name)]
    assert not offenders


def test_the_check_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "mask_source.py"
    source.write_text(
        "import lung_diffusers.training.fidelity\n"
        "from ..training.slice_data import load_slice_dataset\n"
        "from .. import training\n"
        "EXPORTS = {'lung_dice': '..training.fidelity'}\n"
    )
    found = {name for name in imported_modules(source, "lung_diffusers.synthesis.mask_source") if TRAINING.fullmatch(name)}
    assert found == {
        "lung_diffusers.training.fidelity",
        "lung_diffusers.training.slice_data",
        "lung_diffusers.training.slice_data.load_slice_dataset",
        "lung_diffusers.training",
    }
