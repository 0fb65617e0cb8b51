"""Label schemes chosen by number of classes: names, nodule classes, recipe configs and colours."""

import numpy as np
import pytest

from lung_diffusers.ct import (
    ALL_NODULE_CLASSES,
    LABEL_NAMES,
    MALIGNANCY_LABEL_NAMES,
    MALIGNANCY_SCHEME,
    MASK_COLORS_RGB,
    NODULE_SCHEME,
    label_names,
    label_scheme,
    mask_to_rgb,
)


def test_six_classes_mean_one_nodule_class_and_seven_benign_and_malignant_nodules():
    six, seven = label_scheme(6), label_scheme(7)
    assert six is NODULE_SCHEME and seven is MALIGNANCY_SCHEME
    assert six.names == LABEL_NAMES and seven.names == MALIGNANCY_LABEL_NAMES
    assert (six.num_classes, six.nodule_classes, six.tells_malignancy) == (6, (5,), False)
    assert (seven.num_classes, seven.nodule_classes, seven.tells_malignancy) == (7, (5, 6), True)
    assert six.lung_classes == seven.lung_classes == (2, 3)
    assert six.dataset_configs == ("healthy", "nodule") and seven.dataset_configs == ("malignancy",)
    assert ALL_NODULE_CLASSES == (5, 6)
    assert seven.display_names()[6] == "malignant nodule"


@pytest.mark.parametrize("num_classes", [2, 5, 8, 151])
def test_other_class_counts_have_no_lung_scheme_but_generic_names(num_classes):
    with pytest.raises(ValueError, match=f"6 classes .* or 7 .*got {num_classes}"):
        label_scheme(num_classes)
    assert label_names(num_classes) == tuple(f"class_{i}" for i in range(num_classes))


def test_the_nodule_class_to_paint_follows_the_scheme():
    assert NODULE_SCHEME.nodule_class() == 5
    assert MALIGNANCY_SCHEME.nodule_class("benign") == 5
    assert MALIGNANCY_SCHEME.nodule_class("malignant") == 6
    with pytest.raises(ValueError, match="needs a 7-class malignancy SDM; this model has 6 classes"):
        NODULE_SCHEME.nodule_class("malignant")
    with pytest.raises(ValueError, match="pass malignancy='benign' or 'malignant'"):
        MALIGNANCY_SCHEME.nodule_class()
    with pytest.raises(ValueError, match="got 'cancer'"):
        MALIGNANCY_SCHEME.nodule_class("cancer")


def test_a_malignant_label_in_a_six_class_map_gets_a_relabelling_hint():
    assert "relabel it 5" in NODULE_SCHEME.unknown_label_hint(np.array([0, 1, 6, 6]))
    assert NODULE_SCHEME.unknown_label_hint(np.array([0, 1, 9])) == ""
    assert MALIGNANCY_SCHEME.unknown_label_hint(np.array([0, 6])) == ""


def test_colours_follow_the_thesis_figure_with_benign_nodules_yellow_in_the_malignancy_scheme():
    six, seven = NODULE_SCHEME.colours, MALIGNANCY_SCHEME.colours
    assert six.shape == (6, 3) and seven.shape == (7, 3) and six.dtype == np.uint8
    assert len({tuple(c) for c in six}) == 6  # every class of a map is told apart
    assert np.array_equal(six[:5], seven[:5])
    assert six[5].tolist() == seven[6].tolist() == [230, 30, 30]  # nodules red, malignant ones too
    assert seven[5].tolist() == [250, 220, 0]
    labels = np.arange(7, dtype=np.uint8)[None]
    assert np.array_equal(mask_to_rgb(labels)[0], MASK_COLORS_RGB)
    assert np.array_equal(mask_to_rgb(labels)[0, :6], six)
    assert np.array_equal(mask_to_rgb(labels, malignancy=True)[0], seven)
    with pytest.raises(ValueError, match="mask values must be 0-6, found 7"):
        mask_to_rgb(np.array([[7]], np.uint8))
