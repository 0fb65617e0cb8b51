"""Train / validation / test assignment by patient.

Slices of one patient are strongly correlated (and LIDC-IDRI has patients with more than one
scan), so every slice of a patient goes to the same split. The split of a patient depends only on
the patient ID and a seed, through a hash, not on which other patients are present. So a run on
``subset0`` and a later run that adds ``subset1`` agree on every patient they share, and an
interrupted run resumes into the same splits. The price is that split sizes match the requested
fractions only on average (closely for the ~880 LUNA16 patients, loosely for a handful).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "validation", "test")


def patient_split(patient_id: str, validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> str:
    """The split (``"train"``, ``"validation"`` or ``"test"``) of one patient.

    The patient's position in [0, 1) is the first 8 bytes of SHA-256 of ``"<seed>:<patient_id>"``;
    below ``test_fraction`` is test, below ``test_fraction + validation_fraction`` is validation.
    """
    check_split_fractions(validation_fraction, test_fraction)
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def check_split_fractions(validation_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are >= 0 and together at most 1."""
    if validation_fraction < 0 or test_fraction < 0 or validation_fraction + test_fraction > 1:
        raise ValueError(
            "split fractions must be >= 0 and sum to at most 1, "
            f"got validation={validation_fraction}, test={test_fraction}"
        )


def patient_level_split(
    patient_ids: Iterable[str], validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, str]:
    """Map each distinct patient ID to its split (see :func:`patient_split`)."""
    return {patient: patient_split(patient, validation_fraction, test_fraction, seed) for patient in set(patient_ids)}
