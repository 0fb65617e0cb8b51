"""Slices, patches and boxes of the downstream tasks from tiny recipe-shaped and synthesize-shaped datasets
(lung_diffusers.evaluation.downstream.nodule_samples), and the LIDC-only nodules of the shared sample."""

from __future__ import annotations

import numpy as np
import pytest
from downstream_support import (
    NODULE_CENTER,
    NODULE_DIAMETER_PX,
    PIXEL_MM,
    write_nodule_recipe,
    write_synthetic_dataset,
)

from lung_diffusers.evaluation.downstream.nodule_samples import (
    localisation_slices,
    lung_patches,
    patch_set,
    recipe_slices,
    slice_boxes,
    synthetic_slices,
)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return write_nodule_recipe(tmp_path_factory.mktemp("recipe") / "recipe")


def test_recipe_slices_carry_their_nodules_at_the_tasks_size(recipe):
    train = recipe_slices(str(recipe), "train", image_size=128)
    assert len(train) == 14 and {s.patient_id for s in train} == {"LIDC-IDRI-0002", "LIDC-IDRI-0003"}
    with_nodules = [s for s in train if s.nodules]
    assert len(with_nodules) == 6 and all(s.image.shape == (128, 128) and s.lungs.any() for s in train)
    nodule = with_nodules[0].nodules[0]
    # Twice the stored size: pixel centres scale as (i + 0.5) * 2 - 0.5, the diameter in px doubles.
    assert nodule.center_px == pytest.approx(tuple(2 * c + 0.5 for c in NODULE_CENTER))
    assert nodule.diameter_px == pytest.approx(2 * NODULE_DIAMETER_PX) and nodule.diameter_mm == 16.0
    malignant = {s.patient_id: s.nodules[0].malignant for s in with_nodules}
    assert malignant == {"LIDC-IDRI-0002": False, "LIDC-IDRI-0003": True}  # ratings 2.0 and 4.0, split at 3
    assert len({n.nodule_id for s in with_nodules for n in s.nodules}) == 2  # two nodules, six slices
    boxes = slice_boxes(with_nodules[0])
    np.testing.assert_allclose(boxes, [[c - 8 for c in nodule.center_px] + [c + 8 for c in nodule.center_px]])


def test_patches_nodule_centred_and_lung_patches_away_from_nodules(recipe):
    train = recipe_slices(str(recipe), "train", image_size=64)
    patches = patch_set(train, "a", np.random.default_rng(0), size=16)
    assert patches.labels.tolist() == [1] * 6 + [0] * 6  # balanced, as the thesis' crops
    nodule_patches, lung = patches.patches[:6], patches.patches[6:]
    assert nodule_patches.shape == (6, 16, 16)
    # The 16 mm nodule (grey 170) fills the centre of its patches; lung patches hold no nodule grey in the middle.
    assert (nodule_patches[:, 6:10, 6:10] > 120).all()
    assert (np.median(lung[:, 6:10, 6:10], axis=(1, 2)) < 100).all()
    again = patch_set(train, "a", np.random.default_rng(0), size=16)
    np.testing.assert_array_equal(patches.patches, again.patches)  # seeded
    three = patch_set(train, "b", np.random.default_rng(0), size=16)
    assert sorted(three.labels.tolist()) == [0] * 6 + [1] * 3 + [2] * 3  # non-nodule, benign, malignant
    with pytest.raises(ValueError, match="no slice with lungs"):
        lung_patches([], 3, np.random.default_rng(0))


def test_localisation_slices_add_as_many_nodule_free_slices(recipe):
    test = recipe_slices(str(recipe), "test", image_size=64)
    chosen = localisation_slices(test, np.random.default_rng(0))
    assert sum(bool(s.nodules) for s in chosen) == 3 and len(chosen) == 6
    tiny = localisation_slices(test, np.random.default_rng(0), min_diameter_mm=20.0)  # every cut too small
    assert tiny == []
    fewer = recipe_slices(str(recipe), "train", image_size=64, max_healthy=3)  # of 8 nodule-free train slices
    assert len(fewer) == 6 + 3 and sum(not s.nodules for s in fewer) == 3


def test_synthetic_nodules_come_from_the_label_maps(tmp_path):
    folder = write_synthetic_dataset(tmp_path / "synthetic")
    slices = synthetic_slices(folder, image_size=64)
    assert len(slices) == 6 and all(s.synthetic for s in slices)
    assert {s.patient_id for s in slices} == {"LIDC-IDRI-0002", "LIDC-IDRI-0001"}
    (nodule,) = slices[0].nodules
    assert nodule.center_px == pytest.approx((32.0, 20.0))
    # The circle of the component's area: a 6-px disc of pixels, about 6 px (12 mm) across.
    assert nodule.diameter_px == pytest.approx(6.0, abs=0.6)
    assert nodule.diameter_mm == pytest.approx(nodule.diameter_px * PIXEL_MM)
    assert nodule.malignant is None  # a 6-class map says nodule, not which kind
    with pytest.raises(FileNotFoundError, match="synthesize"):
        synthetic_slices(tmp_path, 64)


def test_a_malignancy_generator_s_nodules_are_benign_or_malignant_whatever_masks_it_drew_on(tmp_path):
    # A 7-class model placing nodules on 'healthy' masks paints them 5 (benign) or 6 (malignant): task (b) needs both.
    folder = write_synthetic_dataset(tmp_path / "synthetic", num_classes=7)
    slices = synthetic_slices(folder, image_size=64)
    assert [s.nodules[0].malignant for s in slices] == [False, True] * 3
    assert patch_set(slices, "b", np.random.default_rng(0)).labels.tolist().count(2) == 3  # malignant class


def test_the_shared_sample_offers_two_nodules_luna16_leaves_out(shared_dir):
    from lung_diffusers.data.luna16 import read_luna16_annotations
    from lung_diffusers.evaluation.downstream.lidc_nodules import lidc_only_nodules

    root = shared_dir / "data" / "lidc-mini"
    reference = read_luna16_annotations(root / "annotations.csv")
    marks = read_luna16_annotations(root / "annotations_excluded.csv")
    found = {uid[-6:]: lidc_only_nodules(reference.get(uid, []), marks[uid]) for uid in marks}
    assert set(found) == {"603192", "104919", "003264"}  # LIDC-IDRI-0001, -0002, -0003
    assert found["603192"] == []  # LIDC-IDRI-0001: every mark is a read of its reference nodule
    ((nodule_0002, readers_0002),) = found["104919"]
    assert readers_0002 == 2 and nodule_0002.diameter_mm == pytest.approx(23.7, abs=0.1)
    ((nodule_0003, readers_0003),) = found["003264"]
    assert readers_0003 == 1 and nodule_0003.center_mm[2] == pytest.approx(-213.0, abs=0.1)
