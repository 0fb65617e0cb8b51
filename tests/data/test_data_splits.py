import pytest

from lung_diffusers.data.splits import patient_level_split, patient_split


def test_split_is_deterministic_and_depends_on_the_seed():
    patients = [f"LIDC-IDRI-{i:04d}" for i in range(1, 201)]
    first = patient_level_split(patients, 0.1, 0.1, seed=0)
    assert first == patient_level_split(list(reversed(patients)), 0.1, 0.1, seed=0)
    assert first != patient_level_split(patients, 0.1, 0.1, seed=1)


def test_a_patient_keeps_its_split_when_other_patients_are_added():
    small = patient_level_split([f"P{i}" for i in range(50)], 0.2, 0.2)
    large = patient_level_split([f"P{i}" for i in range(5000)], 0.2, 0.2)
    assert all(large[patient] == split for patient, split in small.items())


def test_split_sizes_follow_the_fractions_for_many_patients():
    splits = list(patient_level_split([f"LIDC-IDRI-{i:04d}" for i in range(4000)], 0.1, 0.15).values())
    assert splits.count("validation") / 4000 == pytest.approx(0.10, abs=0.02)
    assert splits.count("test") / 4000 == pytest.approx(0.15, abs=0.02)
    assert set(patient_level_split(["a", "b"], 0.0, 0.0).values()) == {"train"}
    assert patient_split("anyone", 0.0, 1.0) == "test"


@pytest.mark.parametrize("validation, test", [(-0.1, 0.1), (0.6, 0.5)])
def test_impossible_fractions_are_rejected(validation, test):
    with pytest.raises(ValueError, match="split fractions"):
        patient_split("P1", validation, test)
