"""lung_diffusers.evaluation, the one home of the figures the evaluations report (issue 16): it imports without
the optional extras (and without torch), and the modules the figures lived in still work, warning until 1.0.0."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

OPTIONAL = ("monai", "gradio", "matplotlib", "tensorboard", "sklearn", "playwright", "pylidc")


def test_the_package_imports_without_the_optional_extras_or_torch():
    code = f"""
import importlib, pkgutil, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ImportError(name + " is an optional extra")

sys.meta_path.insert(0, Blocked())
import lung_diffusers.evaluation as evaluation
for module in pkgutil.iter_modules(evaluation.__path__):
    importlib.import_module("lung_diffusers.evaluation." + module.name)
for name in evaluation.__all__:
    getattr(evaluation, name)
print(sorted(name for name in ("torch", "diffusers") if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("lung_diffusers.training.fidelity", ("lung_dice", "slice_fidelity", "hu_from_model_range", "DICE_TARGET")),
        ("lung_diffusers.segmentation.metrics", ("dice_and_iou", "bootstrap_interval", "paired_bootstrap_interval")),
        ("lung_diffusers.inpainting.anomaly_evaluation", ("pixel_auroc", "best_dice_threshold", "dice_score")),
    ],
)
def test_the_old_modules_warn_and_hand_out_the_same_objects(old, names, monkeypatch):
    import lung_diffusers.evaluation as evaluation
    from lung_diffusers.evaluation import fidelity

    monkeypatch.delitem(sys.modules, old, raising=False)  # imported earlier in this session: warn again
    with pytest.warns(FutureWarning, match=rf"`{old}` is deprecated and will be removed in version 1\.0\.0"):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(evaluation, name, None) or getattr(module, name) is getattr(fidelity, name)
