import numpy as np
import pytest

from lung_diffusers.data.luna16 import NoduleAnnotation
from lung_diffusers.data.masks import LEFT_LUNG, RIGHT_LUNG, TRACHEA
from lung_diffusers.data.slice_selection import (
    healthy_slice_candidates,
    lung_area_mm2,
    nodule_center_slices,
    nodule_sections,
)


def _finding(z_mm: float, diameter_mm: float) -> NoduleAnnotation:
    return NoduleAnnotation("1.2.3", (0.0, 0.0, z_mm), diameter_mm)


def test_each_nodule_gives_the_slice_nearest_its_centre_and_shared_slices_merge():
    a, b, c = _finding(-100.0, 10.0), _finding(-101.2, 4.0), _finding(-90.0, 6.0)
    # origin -200 mm, 2.5 mm slices: -100 -> 40.0, -101.2 -> 39.52 -> 40, -90 -> 44.
    assert nodule_center_slices([a, b, c], -200.0, 2.5, 100) == {40: [a, b], 44: [c]}


def test_a_nodule_outside_its_scan_is_an_error_naming_the_series():
    with pytest.raises(ValueError, match=r"1\.2\.3 lies outside its scan"):
        nodule_center_slices([_finding(100.0, 5.0)], -200.0, 2.5, 100)


def test_nodules_are_drawn_whole_in_their_centre_slice_and_as_cross_sections_nearby():
    nodule = _finding(-100.0, 10.0)
    assert [(s.annotation, s.diameter_mm) for s in nodule_sections(40, [nodule], -200.0, 2.5)] == [(nodule, 10.0)]
    # One slice up: 2.5 mm from the centre of a 5 mm radius sphere.
    (section,) = nodule_sections(41, [nodule], -200.0, 2.5)
    assert section.diameter_mm == pytest.approx(2 * np.sqrt(25 - 6.25))
    assert nodule_sections(42, [nodule], -200.0, 2.5) == []  # 5 mm away: touches, no area


def test_healthy_candidates_take_every_fourth_slice_clear_of_every_sized_finding():
    findings = [_finding(50.0, 10.0), _finding(20.0, -1.0), _finding(80.0, 4.0)]
    candidates = healthy_slice_candidates(100, 0.0, 1.0, findings, healthy_stride=4)
    # 1 mm slices. Nodule at 50 mm, radius 5: slices with |z - 50| <= 5 + 1 go (44, 48, 52, 56).
    # Finding at 80 mm, radius 2: |z - 80| <= 3 goes (80). The size-less finding at 20 mm does not count.
    expected = [z for z in range(0, 100, 4) if z not in (44, 48, 52, 56, 80)]
    assert candidates.tolist() == expected


def test_a_slice_exactly_one_radius_plus_one_slice_away_is_not_healthy():
    # 2 mm slices; a 14 mm nodule at z = 0: healthy needs |z| > 7 + 2 = 9 mm.
    candidates = healthy_slice_candidates(20, 0.0, 2.0, [_finding(0.0, 14.0), _finding(18.0, 0.0)], healthy_stride=1)
    assert candidates.tolist()[:2] == [5, 6]  # slice 4 (8 mm) is too close, slice 5 (10 mm) is clear
    assert 9 in candidates.tolist()  # a zero-diameter finding does not count either
    with pytest.raises(ValueError, match="at least 1"):
        healthy_slice_candidates(20, 0.0, 2.0, [], healthy_stride=0)


def test_lung_area_counts_both_lungs_but_not_the_trachea():
    labels = np.zeros((10, 10), np.uint8)
    labels[0, :3], labels[1, :2], labels[2, :5] = LEFT_LUNG, RIGHT_LUNG, TRACHEA
    assert lung_area_mm2(labels, 0.5) == pytest.approx(2.5)
