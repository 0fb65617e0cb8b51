"""The recipe for one slice on a small synthetic chest, including the benign/malignant split."""

import cv2
import numpy as np
import pytest

from lung_diffusers.ct import CTVolume, window_hu
from lung_diffusers.data.luna16 import NoduleAnnotation
from lung_diffusers.data.malignancy import NoduleMalignancy
from lung_diffusers.data.masks import (
    BENIGN_NODULE,
    BODY,
    LEFT_LUNG,
    MALIGNANT_NODULE,
    NODULE,
    RIGHT_LUNG,
    TRACHEA,
)
from lung_diffusers.data.slice_recipe import label_slice
from lung_diffusers.data.slice_selection import NoduleSection


class GivenLungLabels:
    """Lung labels known in advance (the recipe only asks for them slice by slice)."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels

    def slice_labels(self, slice_index, hu_slice, body):
        return self.labels


@pytest.fixture
def synthetic_chest():
    hu = np.full((1, 96, 96), -1000, np.int16)
    cv2.ellipse(hu[0], (48, 48), (44, 34), 0, 0, 360, 40, -1)
    lungs = np.zeros((96, 96), np.uint8)
    cv2.ellipse(lungs, (28, 48), (14, 24), 0, 0, 360, RIGHT_LUNG, -1)  # image left: the patient's right
    cv2.ellipse(lungs, (68, 48), (14, 24), 0, 0, 360, LEFT_LUNG, -1)
    lungs[20:24, 46:50] = TRACHEA
    hu[0][lungs > 0] = -850
    for centre in ((28, 40), (68, 56)):
        cv2.circle(hu[0], centre, 4, 30, -1)
    volume = CTVolume(hu, (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), "synthetic", np.eye(3, 4))
    return volume, GivenLungLabels(lungs)


def _section(x, y, diameter=9.0):
    return NoduleSection(NoduleAnnotation("synthetic", (x, y, 0.0), diameter), diameter)


def test_benign_and_malignant_nodules_get_5_and_6(synthetic_chest):
    volume, lungs = synthetic_chest
    benign, malignant = _section(28.0, 40.0), _section(68.0, 56.0)
    labelled = label_slice(
        volume, 0, lungs, 96, [(benign, NoduleMalignancy(2.5, 4)), (malignant, NoduleMalignancy(3.0, 3))]
    )
    assert labelled.mask[40, 28] == NODULE and labelled.mask[56, 68] == NODULE
    assert labelled.malignancy_mask[40, 28] == BENIGN_NODULE
    assert labelled.malignancy_mask[56, 68] == MALIGNANT_NODULE
    assert set(np.unique(labelled.malignancy_mask)) == {0, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, 5, 6}
    # Away from the nodules both maps are the same.
    nodules = labelled.mask == NODULE
    assert np.array_equal(labelled.malignancy_mask[~nodules], labelled.mask[~nodules])
    assert np.array_equal(labelled.image, window_hu(volume.hu[0]))
    assert labelled.lung_area_mm2 == pytest.approx(((lungs.labels == LEFT_LUNG) | (lungs.labels == RIGHT_LUNG)).sum())


def test_a_slice_with_an_unrated_nodule_has_no_malignancy_map(synthetic_chest):
    volume, lungs = synthetic_chest
    drawn = [(_section(28.0, 40.0), NoduleMalignancy(4.0, 4)), (_section(68.0, 56.0), NoduleMalignancy(None, 0))]
    labelled = label_slice(volume, 0, lungs, 96, drawn)
    assert labelled.malignancy_mask is None and (labelled.mask == NODULE).sum() > 20
    assert label_slice(volume, 0, lungs, 96, [(_section(28.0, 40.0), None)]).malignancy_mask is None


def test_a_nodule_drawn_over_the_trachea_wins_and_healthy_slices_have_no_nodule(synthetic_chest):
    volume, lungs = synthetic_chest
    volume.hu[0, 19:25, 45:51] = 150  # a nodule, brighter than the soft tissue around it, on the trachea
    labelled = label_slice(volume, 0, lungs, 96, [(_section(47.5, 21.5, 6.0), NoduleMalignancy(2.0, 4))])
    assert labelled.mask[21, 47] == NODULE and labelled.malignancy_mask[21, 47] == BENIGN_NODULE
    healthy = label_slice(volume, 0, lungs, 48)
    assert healthy.mask.shape == (48, 48) and healthy.malignancy_mask is None
    assert NODULE not in healthy.mask and TRACHEA in healthy.mask
