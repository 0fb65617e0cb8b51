"""Train / test assignment by patient.

Slices of one patient are strongly correlated (and LIDC-IDRI has patients with more than one
scan), so every slice of a patient goes to the same split. Each patient gets a position in
[0, 1) from a hash of the seed and its ID; positions below ``test_fraction`` are test. That makes
the split deterministic, and for a large set a patient's split does not depend on which other
patients are present: a run on ``subset0`` and one on all subsets agree on shared patients.
With two or more patients each split gets at least one (the lowest position moves to test, or
the highest to train, when the hash leaves a split empty); only small sets ever need that. That
fix-up depends on who else is in the set, so a dataset folder stores the split it made when it was
created and gives patients added later the plain hash rule (:func:`patient_split`).
The thesis held out 144 of 888 scans (16 %), the default fraction here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "test")
# The thesis held out 144 of 888 scans.
DEFAULT_TEST_FRACTION = 0.16


def patient_position(patient_id: str, seed: int = 0) -> float:
    """The patient's position in [0, 1): the first 8 bytes of SHA-256 of ``"<seed>:<patient_id>"``."""
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def patient_level_split(
    patient_ids: Iterable[str], test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0
) -> dict[str, str]:
    """Map each distinct patient ID to ``"train"`` or ``"test"`` (see module docstring).

    Raises:
        ValueError: ``test_fraction`` is not in [0, 1).
    """
    check_test_fraction(test_fraction)
    patients = sorted(set(patient_ids))
    position = {patient: patient_position(patient, seed) for patient in patients}
    split = {patient: patient_split(patient, test_fraction, seed) for patient in patients}
    if len(patients) >= 2 and test_fraction > 0:
        if "test" not in split.values():
            split[min(patients, key=position.__getitem__)] = "test"
        if "train" not in split.values():
            split[max(patients, key=position.__getitem__)] = "train"
    return split


def patient_split(patient_id: str, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> str:
    """The hash rule alone: ``"test"`` if the patient's position is below ``test_fraction``, else ``"train"``."""
    return "test" if patient_position(patient_id, seed) < test_fraction else "train"


def check_test_fraction(test_fraction: float) -> None:
    """Raise ValueError unless ``0 <= test_fraction < 1``."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be at least 0 and below 1, got {test_fraction}")
