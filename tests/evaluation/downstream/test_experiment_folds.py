"""The experiment's splits (lung_diffusers.evaluation.downstream.experiment.make_folds): the recipe's split, or
patient-level folds in which every patient is tested once and synthetic slices of test patients are left out."""

from __future__ import annotations

import numpy as np
import pytest

from lung_diffusers.evaluation.downstream.experiment import DownstreamSettings, make_folds
from lung_diffusers.evaluation.downstream.nodule_samples import SliceSample


def slices(patients: list[str], synthetic: bool = False) -> list[SliceSample]:
    image = np.zeros((8, 8), np.uint8)
    return [SliceSample(image, None, [], p, f"{p}:{k}", synthetic) for k, p in enumerate(patients)]


def test_patient_level_folds_test_every_patient_once():
    patients = [f"LIDC-IDRI-{k:04d}" for k in range(1, 8)]
    train, test = slices(patients[:5] * 2), slices(patients[5:] * 2)
    synthetic = slices(patients[:3], synthetic=True)
    folds = make_folds(train, test, synthetic, folds=3)
    tested = [p for fold in folds for p in fold.test_patients]
    assert sorted(tested) == patients  # each patient in exactly one test fold
    for fold in folds:
        assert not {s.patient_id for s in fold.train} & set(fold.test_patients)
        assert not {s.patient_id for s in fold.synthetic} & set(fold.test_patients)
        assert fold.synthetic_left_out == sum(s.patient_id in fold.test_patients for s in synthetic)
    assert sorted(len(f.test_patients) for f in folds) == [2, 2, 3]  # dealt round-robin
    assert [f.test_patients for f in make_folds(train, test, synthetic, folds=3)] == [f.test_patients for f in folds]


def test_the_recipe_split_is_kept_and_checked():
    (fold,) = make_folds(slices(["A", "B"]), slices(["C"]), slices(["A", "C"], synthetic=True), folds=None)
    assert fold.test_patients == ["C"] and [s.patient_id for s in fold.synthetic] == ["A"]
    with pytest.raises(ValueError, match="in both the train and the test split"):
        make_folds(slices(["A", "B"]), slices(["B"]), [], folds=None)
    with pytest.raises(ValueError, match="at least 5 patients"):
        make_folds(slices(["A", "B"]), slices(["C"]), [], folds=5)
    with pytest.raises(ValueError, match="tasks must be"):
        DownstreamSettings(tasks=("a", "d")).check()
