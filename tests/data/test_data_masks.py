import cv2
import numpy as np
import pytest
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from lung_diffusers.ct import LABEL_NAMES, MALIGNANCY_LABEL_NAMES, MASK_COLORS_RGB, mask_to_rgb, resize_label_map
from lung_diffusers.data.contact_sheet import contact_sheet
from lung_diffusers.data.masks import (
    BODY,
    LEFT_LUNG,
    NODULE,
    RIGHT_LUNG,
    TRACHEA,
    body_mask,
    compose_label_map,
    kmeans_two_cluster_threshold,
    nodule_mask_from_annotation,
    resize_ct_image,
)


def _chest_phantom() -> np.ndarray:
    """A lung-window slice: body at 200 with two dark lungs, a separate scanner table, air at 0."""
    image = np.zeros((200, 200), np.uint8)
    cv2.ellipse(image, (100, 90), (80, 60), 0, 0, 360, 200, -1)
    cv2.ellipse(image, (65, 90), (25, 35), 0, 0, 360, 15, -1)
    cv2.ellipse(image, (135, 90), (25, 35), 0, 0, 360, 15, -1)
    cv2.rectangle(image, (20, 170), (180, 180), 200, -1)
    return image


def test_class_values_match_the_thesis_listings():
    assert LABEL_NAMES == ("background", "body", "left_lung", "right_lung", "trachea", "nodule")
    assert MALIGNANCY_LABEL_NAMES[5:] == ("benign_nodule", "malignant_nodule")


def test_body_mask_fills_the_lungs_and_drops_the_table():
    image = _chest_phantom()
    body = body_mask(image)
    assert body[90, 65] and body[90, 135]  # lungs are holes inside the body, filled
    assert not body[175, 100]  # the table is a separate, smaller region
    assert not body[5, 5]
    assert body.sum() == pytest.approx(np.pi * 80 * 60, rel=0.02)


def test_body_threshold_is_strictly_above_127():
    image = np.zeros((20, 20), np.uint8)
    image[5:15, 5:15] = 127
    assert not body_mask(image).any()
    image[5:15, 5:15] = 128
    assert body_mask(image).sum() == 100


def test_nodule_mask_keeps_the_bright_blob_inside_the_dilated_disc():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(30, 6, (128, 128)), 1, 255).astype(np.uint8)  # lung parenchyma
    truth = np.zeros_like(image)
    cv2.circle(truth, (64, 60), 6, 1, -1)
    image[truth > 0] = np.clip(rng.normal(190, 8, truth.sum()), 0, 255).astype(np.uint8)
    image[:, 90:93] = 200  # a vessel well outside the annotated disc
    nodule = nodule_mask_from_annotation(image, center_px=(64.3, 60.4), diameter_px=14.0)
    intersection = np.logical_and(nodule, truth).sum()
    assert intersection / np.logical_or(nodule, truth).sum() > 0.95
    assert not nodule[:, 90:93].any()


def test_nodule_disc_radius_follows_the_thesis_rounding():
    image = np.full((64, 64), 100, np.uint8)
    image[32, 32] = 50  # two grey levels, so the threshold sits between them
    # ceil(9.2) // 2 = 5 px radius, dilated by the 5x5 kernel to about 7 px.
    nodule = nodule_mask_from_annotation(image, (32, 32), 9.2)
    rows = np.flatnonzero(nodule.any(axis=1))
    assert rows.min() == 32 - 7 and rows.max() == 32 + 7
    with pytest.raises(ValueError, match="positive"):
        nodule_mask_from_annotation(image, (32, 32), 0.0)


def _inertia(values: np.ndarray, threshold: float) -> float:
    low, high = values[values <= threshold], values[values > threshold]
    return float(((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum())


def test_two_cluster_threshold_equals_kmeans_or_beats_its_local_optimum():
    rng = np.random.default_rng(1)
    same = 0
    for _ in range(40):
        dark = rng.normal(rng.uniform(20, 120), rng.uniform(3, 30), rng.integers(20, 400))
        bright = rng.normal(rng.uniform(120, 250), rng.uniform(3, 30), rng.integers(5, 400))
        values = np.clip(np.rint(np.concatenate([dark, bright])), 1, 255).astype(np.uint8)
        with threadpool_limits(1):  # OpenMP threads make each small fit ~5x slower
            kmeans = KMeans(n_clusters=2, n_init=10, random_state=0).fit(values.reshape(-1, 1).astype(np.float64))
        ours = kmeans_two_cluster_threshold(values)
        theirs = float(np.mean(kmeans.cluster_centers_))
        as_float = values.astype(float)
        assert _inertia(as_float, np.floor(ours)) <= kmeans.inertia_ * (1 + 1e-9)
        same += abs(ours - theirs) < 1e-3
    assert same >= 36


def test_compose_label_map_lets_the_higher_class_win():
    body = np.ones((4, 4), bool)
    lungs = np.zeros((4, 4), np.uint8)
    lungs[1, 1], lungs[1, 2], lungs[2, 2] = LEFT_LUNG, RIGHT_LUNG, TRACHEA
    nodules = np.zeros((4, 4), np.uint8)
    nodules[1, 1:3] = NODULE
    body[3, 3] = False
    labels = compose_label_map(body, lungs, nodules)
    assert labels.tolist() == [[1, 1, 1, 1], [1, 5, 5, 1], [1, 1, 4, 1], [1, 1, 1, 0]]
    assert compose_label_map(body, lungs)[1, 1] == LEFT_LUNG


@pytest.mark.parametrize("offset", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_resizing_labels_keeps_a_three_pixel_nodule_and_adds_no_class(offset):
    labels = np.full((512, 512), BODY, np.uint8)
    labels[100:300, 50:250] = RIGHT_LUNG
    labels[100:300, 260:460] = LEFT_LUNG
    top, left = 200 + offset[0], 120 + offset[1]
    labels[top : top + 3, left : left + 3] = NODULE
    small = resize_label_map(labels, 256)
    assert small.shape == (256, 256) and small.dtype == np.uint8
    assert set(np.unique(small)) == {BODY, LEFT_LUNG, RIGHT_LUNG, NODULE}
    assert (small[:, :128] == LEFT_LUNG).sum() == 0  # no lung moved sides


def test_resize_ct_image_averages_when_shrinking():
    image = np.zeros((512, 512), np.uint8)
    image[::2, ::2] = 200
    small = resize_ct_image(image, 256)
    assert small.shape == (256, 256) and np.all(small == 50)
    assert resize_ct_image(image, 512) is not image


def test_mask_colours_and_contact_sheet_layout():
    mask = np.arange(7, dtype=np.uint8).reshape(1, 7)
    assert np.array_equal(mask_to_rgb(mask)[0], MASK_COLORS_RGB)
    assert mask_to_rgb(mask, malignancy=True)[0, 5].tolist() != mask_to_rgb(mask)[0, 5].tolist()
    with pytest.raises(ValueError, match="0-6"):
        mask_to_rgb(np.array([[7]], np.uint8))
    image = np.full((256, 256), 100, np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    mask[20:236, 20:236] = BODY
    mask[60:200, 60:200] = LEFT_LUNG
    sheet = contact_sheet([(image, mask)] * 3, [(image, mask)] * 2, tile_size=256)
    assert sheet.shape == (4 * 256 + 24, 3 * 256, 3)
    assert sheet[128, 128].tolist() == [100, 100, 100]  # first band: the CT slice
    # Second band: lungs tinted with their colour, the body only outlined, the background untouched.
    assert sheet[256 + 128, 128] == pytest.approx(0.55 * 100 + 0.45 * MASK_COLORS_RGB[LEFT_LUNG], abs=1)
    assert sheet[256 + 40, 128].tolist() == [100, 100, 100]
    assert sheet[256 + 20, 128].tolist() == MASK_COLORS_RGB[BODY].tolist()
    assert sheet[256 + 5, 128].tolist() == [100, 100, 100]
    # A 7-class (malignancy) sheet shows a benign nodule (5) in its own colour, and both nodule kinds in its legend.
    mask[100:120, 100:120] = 5
    six, seven = contact_sheet([(image, mask)], [], tile_size=256), contact_sheet([(image, mask)], [], tile_size=256, malignancy=True)
    benign = mask_to_rgb(np.array([[5]], np.uint8), malignancy=True)[0, 0]
    assert seven[256 + 110, 110] == pytest.approx(0.15 * 100 + 0.85 * benign, abs=1)
    assert six[256 + 110, 110] == pytest.approx(0.15 * 100 + 0.85 * MASK_COLORS_RGB[5], abs=1)
    assert (seven[-24:] != six[-24:]).any()  # the legend names benign and malignant nodules
