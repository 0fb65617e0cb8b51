"""lung_diffusers.evaluation.downstream imports without torch, MONAI or matplotlib (they are imported on use)."""

from __future__ import annotations

import subprocess
import sys


def test_every_module_imports_without_torch_monai_or_matplotlib():
    code = """
import importlib, pkgutil, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "monai", "matplotlib"):
            raise ImportError(name + " is imported on use only")

sys.meta_path.insert(0, Blocked())
import lung_diffusers.evaluation.downstream as downstream
for module in pkgutil.iter_modules(downstream.__path__):
    importlib.import_module("lung_diffusers.evaluation.downstream." + module.name)
for name in downstream.__all__:
    getattr(downstream, name)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
