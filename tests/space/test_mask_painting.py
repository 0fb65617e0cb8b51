"""The Space's pure mask functions: painted colours back to class ids, and nodules placed in millimetres."""

import itertools

import numpy as np
import pytest
from lung_space.mask_painting import (
    DEFAULT_FIELD_OF_VIEW_MM,
    block_majority,
    default_pixel_mm,
    display_to_mask,
    labels_to_rgb,
    nodule_disc,
    painted_labels,
    palette,
    place_nodule,
    rgb_to_classes,
)

from lung_diffusers.ct import MASK_COLORS_RGB


@pytest.mark.parametrize("num_classes", [6, 7])
def test_palette_is_the_project_colours_and_distinct(num_classes):
    colours = palette(num_classes)
    assert colours.shape == (num_classes, 3)
    assert len({tuple(c) for c in colours}) == num_classes
    np.testing.assert_array_equal(colours[:5], MASK_COLORS_RGB[:5])
    if num_classes == 7:  # benign yellow, malignant red, as the contact sheet shows them
        assert tuple(colours[5]) == (250, 220, 0) and tuple(colours[6]) == tuple(MASK_COLORS_RGB[6])


def test_palette_refuses_other_class_counts():
    with pytest.raises(ValueError, match="6- or 7-class"):
        palette(4)


@pytest.mark.parametrize("num_classes", [6, 7])
def test_every_palette_colour_maps_back_to_its_class_exactly(num_classes):
    labels = np.arange(num_classes, dtype=np.uint8).repeat(3)[None].repeat(2, axis=0)
    np.testing.assert_array_equal(rgb_to_classes(labels_to_rgb(labels, num_classes), num_classes), labels)


@pytest.mark.parametrize("num_classes", [6, 7])
@pytest.mark.parametrize("share", [0.0, 0.2, 0.45, 0.55, 0.8, 1.0])
def test_anti_aliased_edges_go_to_the_nearer_of_their_two_classes(num_classes, share):
    """A pixel blended from classes a and b (``share`` of a) goes to a or b, whichever it has more of, never a
    third class, even where a third colour is nearer (the midpoint of orange and black is nearer red)."""
    colours = palette(num_classes).astype(np.float64)
    pairs = list(itertools.combinations(range(num_classes), 2))
    blended = np.array([[np.rint(share * colours[a] + (1 - share) * colours[b]) for a, b in pairs]], np.uint8)
    classes = rgb_to_classes(blended, num_classes)[0]
    expected = [a if share > 0.5 else b for a, b in pairs]
    np.testing.assert_array_equal(classes, expected)


def test_rgba_pictures_are_read_by_their_colour():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = palette(6)[3]
    rgba[..., 3] = 255
    assert (rgb_to_classes(rgba, 6) == 3).all()


def test_block_majority_takes_the_most_common_class_per_block():
    classes = np.zeros((4, 4), np.uint8)
    classes[:2, :2] = [[2, 2], [2, 0]]  # 3 of 4 -> 2
    classes[:2, 2:] = [[3, 3], [1, 1]]  # tie -> lower id
    assert block_majority(classes, 2, 6).tolist() == [[2, 1], [0, 0]]


@pytest.mark.parametrize("scale", [1, 8])
def test_a_mask_shown_enlarged_comes_back_unchanged(scale):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(64, 64)).astype(np.uint8)
    np.testing.assert_array_equal(painted_labels(labels_to_rgb(labels, 6, scale), 6, 64), labels)


def test_a_stroke_with_soft_edges_paints_whole_mask_pixels():
    labels = np.ones((8, 8), np.uint8)
    picture = labels_to_rgb(labels, 6, 8).astype(np.float64)
    body, trachea = palette(6)[1].astype(np.float64), palette(6)[4].astype(np.float64)
    picture[20:36, :] = trachea  # two mask rows and a half, painted
    picture[19, :] = 0.5 * trachea + 0.5 * body + 1  # anti-aliased rims
    picture[36, :] = 0.3 * trachea + 0.7 * body
    painted = painted_labels(np.rint(picture).astype(np.uint8), 6, 8)
    assert painted[2:4].tolist() == [[4] * 8] * 2  # rows 16-31 are more than half trachea
    assert (painted[[0, 1, 5, 6, 7]] == 1).all()
    assert set(np.unique(painted[4])) <= {1, 4}


def test_painted_pictures_of_the_wrong_size_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        painted_labels(np.zeros((100, 100, 3), np.uint8), 6, 64)
    with pytest.raises(ValueError, match="square"):
        painted_labels(np.zeros((128, 64, 3), np.uint8), 6, 64)


def test_blank_masks_assume_a_360_mm_field_of_view():
    assert DEFAULT_FIELD_OF_VIEW_MM == 360
    assert default_pixel_mm(64) == 5.625  # the example masks' own spacing
    assert default_pixel_mm(256) == 1.40625


def test_clicks_on_an_enlarged_picture_map_to_mask_pixel_centres():
    assert display_to_mask((0, 0), 8) == (-0.4375, -0.4375)  # inside mask pixel (0, 0)
    assert display_to_mask((3.5, 3.5), 8) == (0.0, 0.0)  # the centre of mask pixel (0, 0)
    row, col = display_to_mask((100, 300), 8)
    assert (round(row), round(col)) == (300 // 8, 100 // 8)


def test_nodule_diameter_is_converted_with_the_pixel_spacing():
    # 22.5 mm at 5.625 mm per pixel: 4 px across, a disc of radius 2 px around a pixel centre (13 pixels).
    disc = nodule_disc((64, 64), (30, 30), 22.5, (5.625, 5.625))
    assert disc.sum() == 13
    rows, cols = np.nonzero(disc)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (5, 5)
    # The same nodule at half the spacing covers about four times the pixels.
    assert 45 <= nodule_disc((64, 64), (30, 30), 22.5, (2.8125, 2.8125)).sum() <= 55


def test_a_nodule_smaller_than_a_pixel_still_has_one_pixel():
    disc = nodule_disc((64, 64), (10.3, 20.4), 0.5, (5.625, 5.625))
    assert disc.sum() == 1 and disc[10, 20]


def test_anisotropic_spacing_gives_an_elliptic_footprint_in_pixels():
    disc = nodule_disc((64, 64), (32, 32), 20, (2.0, 1.0))  # rows 2 mm, columns 1 mm
    rows, cols = np.nonzero(disc)
    assert cols.max() - cols.min() > rows.max() - rows.min()


@pytest.mark.parametrize("diameter", [0, -3, float("nan"), float("inf")])
def test_absurd_diameters_are_refused(diameter):
    with pytest.raises(ValueError, match="diameter"):
        nodule_disc((64, 64), (30, 30), diameter, (1.0, 1.0))


def test_place_nodule_paints_inside_the_body_only():
    labels = np.zeros((64, 64), np.uint8)
    labels[10:54, 10:54] = 1
    labels[20:44, 15:30] = 3
    edited = place_nodule(labels, (25, 12), 30, (1.0, 1.0), 5)
    nodule = edited == 5
    assert nodule.any() and not (nodule & (labels == 0)).any()
    assert (edited[~nodule] == labels[~nodule]).all()
    malignant = place_nodule(labels, (30, 20), 5, (1.0, 1.0), 6)
    assert (malignant == 6).sum() > 0


def test_place_nodule_refuses_background_and_points_outside():
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 20:40] = 1
    with pytest.raises(ValueError, match="inside the patient"):
        place_nodule(labels, (5, 5), 10, (1.0, 1.0), 5)
    with pytest.raises(ValueError, match="outside"):
        place_nodule(labels, (70, 5), 10, (1.0, 1.0), 5)
