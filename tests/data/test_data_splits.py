import pytest

from lung_diffusers.data.splits import DEFAULT_TEST_FRACTION, patient_level_split


def test_split_is_deterministic_disjoint_and_depends_on_the_seed():
    patients = [f"LIDC-IDRI-{i:04d}" for i in range(1, 201)]
    first = patient_level_split(patients, 0.16, seed=0)
    assert set(first) == set(patients) and set(first.values()) == {"train", "test"}
    assert first == patient_level_split(list(reversed(patients)) + patients[:5], 0.16, seed=0)
    assert first != patient_level_split(patients, 0.16, seed=1)


def test_a_patient_keeps_its_split_when_other_patients_are_added():
    small = patient_level_split([f"P{i}" for i in range(50)], 0.2)
    large = patient_level_split([f"P{i}" for i in range(5000)], 0.2)
    assert all(large[patient] == split for patient, split in small.items())


def test_split_sizes_follow_the_fraction_for_many_patients():
    splits = list(patient_level_split([f"LIDC-IDRI-{i:04d}" for i in range(4000)]).values())
    assert DEFAULT_TEST_FRACTION == 0.16  # the thesis' 144 of 888
    assert splits.count("test") / 4000 == pytest.approx(0.16, abs=0.02)


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_with_two_or_more_patients_each_split_gets_one(fraction):
    for count in (2, 3, 5):
        split = patient_level_split([f"P{i}" for i in range(count)], fraction, seed=3)
        assert set(split.values()) == {"train", "test"}, (count, split)
    assert patient_level_split(["only"], 0.5) in ({"only": "train"}, {"only": "test"})
    assert set(patient_level_split(["a", "b", "c"], 0.0).values()) == {"train"}


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_impossible_fractions_are_rejected(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        patient_level_split(["P1", "P2"], fraction)
