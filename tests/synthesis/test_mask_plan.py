"""Mask sampling and nodule placement: pure functions of (seed, global index), nodules inside the lungs."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from lung_diffusers.ct import LEFT_LUNG, NODULE, RIGHT_LUNG
from lung_diffusers.synthesis.mask_plan import MaskSampler, image_seed, nodule_position, wants_nodule
from lung_diffusers.synthesis.mask_source import load_mask_source
from lung_diffusers.synthesis.settings import MaskSpec, SynthesisSettings


@pytest.fixture(scope="module")
def healthy_source(inputs):
    return load_mask_source(MaskSpec(str(inputs.masks), "healthy"), num_classes=6, image_size=32, cache_dir=str(inputs.cache))


def settings_for(source, **changes) -> SynthesisSettings:
    values = dict(
        pipeline="tiny", pipeline_revision=None, weights_sha256="0" * 64, image_size=32, num_classes=6,
        masks_dataset=source.spec.dataset, masks_config="healthy", masks_split="train", masks_rows=len(source),
        masks_sha256=source.sha256, num_images=40, batch_size=4, seed=7, scheduler="dpm",
        scheduler_class="DPMSolverMultistepScheduler", num_inference_steps=4, guidance_scale=1.0,
        nodule_fraction=0.3, malignant_fraction=None, nodule_diameter_mm=(6.0, 14.0), torch_threads=1,
    )
    return SynthesisSettings(**{**values, **changes})


def test_mask_specs_parse_dataset_config_and_split(tmp_path):
    assert MaskSpec.parse("user/lungs") == MaskSpec("user/lungs", None, "train")
    assert MaskSpec.parse("user/lungs:nodule") == MaskSpec("user/lungs", "nodule", "train")
    assert MaskSpec.parse("data/luna16:healthy/test") == MaskSpec("data/luna16", "healthy", "test")
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert MaskSpec.parse(str(odd)) == MaskSpec(str(odd))  # an existing folder whose name has a colon


def test_the_nodule_share_is_exact_for_every_prefix():
    for fraction, share in ((0.0, Fraction(0)), (0.3, Fraction(3, 10)), (0.5, Fraction(1, 2)), (1.0, Fraction(1))):
        flags = [wants_nodule(i, fraction) for i in range(300)]
        assert [sum(flags[:n]) for n in range(301)] == [int(n * share) for n in range(301)]


def test_plans_are_a_function_of_seed_and_index_alone(healthy_source):
    settings = settings_for(healthy_source)
    forward = [MaskSampler(settings, healthy_source).plan(i) for i in range(40)]
    sampler = MaskSampler(settings, healthy_source)
    backward = [sampler.plan(i) for i in reversed(range(40))][::-1]
    assert forward == backward  # order (and so the process asking) does not matter
    assert len({p.seed for p in forward}) == 40 and forward[3].seed == image_seed(7, 3)
    other_seed = [MaskSampler(replace(settings, seed=8), healthy_source).plan(i) for i in range(40)]
    assert [p.seed for p in other_seed] != [p.seed for p in forward]
    # Masks are dealt like cards: each of the 6 used once per round of 6 images.
    rows = [p.source_row for p in forward]
    assert all(sorted(rows[k : k + 6]) == list(range(6)) for k in range(0, 36, 6))


def test_placed_nodules_lie_inside_the_lungs_with_sizes_in_range(healthy_source):
    sampler = MaskSampler(settings_for(healthy_source, nodule_fraction=1.0), healthy_source)
    for index in range(30):
        plan = sampler.plan(index)
        assert 6.0 <= plan.nodule.diameter_mm <= 14.0
        assert plan.nodule.diameter_px == pytest.approx(plan.nodule.diameter_mm / 4.0)  # 2 mm stored pixels, halved
        before, after = healthy_source.label_map(plan.source_row), sampler.label_map(plan)
        nodule = after == NODULE
        assert nodule.any() and np.isin(before[nodule], (LEFT_LUNG, RIGHT_LUNG)).all()
        assert (after[~nodule] == before[~nodule]).all()


def test_seven_class_models_get_benign_and_malignant_nodules(healthy_source):
    settings = settings_for(healthy_source, num_classes=7, nodule_fraction=1.0, malignant_fraction=0.25)
    sampler = MaskSampler(settings, healthy_source)
    labels = [sampler.plan(i).nodule.label for i in range(200)]
    assert set(labels) == {5, 6} and 0.15 < labels.count(6) / 200 < 0.35


def test_no_room_in_the_lungs_means_no_position():
    labels = np.zeros((16, 16), np.uint8)
    labels[4:8, 4:8] = LEFT_LUNG  # 4 px wide
    rng = np.random.default_rng(0)
    assert nodule_position(labels, 5.0, rng) is None
    row, column = nodule_position(labels, 1.0, rng)
    assert 4 <= row < 8 and 4 <= column < 8


def test_giant_nodules_get_a_clear_error(healthy_source):
    sampler = MaskSampler(settings_for(healthy_source, nodule_fraction=1.0, nodule_diameter_mm=(200.0, 300.0)), healthy_source)
    with pytest.raises(ValueError, match="no room for a nodule of 200-300 mm"):
        sampler.plan(0)
