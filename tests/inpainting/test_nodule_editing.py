"""Nodule removal and insertion on a real LIDC-IDRI slice (tiny random models), difference maps and figures."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from lung_support import FAST, repaint_pipe, tiny_prior_unet, tiny_sdm

from lung_diffusers import insert_nodule, is_synthetic, remove_nodule
from lung_diffusers.ct import LEFT_LUNG, MALIGNANT_NODULE, NODULE
from lung_diffusers.inpainting import (
    difference_map,
    dilate_mask,
    disc_mask,
    mean_and_uncertainty,
    nodule_mask_from_labels,
    quantile_clip,
)


@pytest.fixture(scope="module")
def prior32():
    # 32 px: the 21 mm nodule (about 13 px of the 256-px slice) plus its dilation fits the window.
    return repaint_pipe(tiny_prior_unet(sample_size=32))


# ------------------------------------------------------------------------------------- difference maps (Listing 6)


def test_quantile_clipping_then_subtracting_leaves_the_lesion():
    # RePaint's drift sits in the extremes (air, bone) of a slice; the lesion is mid-range tissue. Clipping each
    # image to its own 5 % / 95 % quantiles removes the first and keeps the second (thesis Figure 4.4).
    rng = np.random.default_rng(0)
    tissue = rng.uniform(0.3, 0.5, (64, 64)).astype(np.float32)
    without, with_lesion = tissue.copy(), tissue.copy()
    with_lesion[:2], without[:2] = 0.0, 0.02 + rng.uniform(0, 0.01, (2, 64))  # air, drifted (3 % of pixels)
    with_lesion[-2:], without[-2:] = 1.0, 0.93 + rng.uniform(0, 0.05, (2, 64))  # bone, drifted
    without[30:40, 30:40], with_lesion[30:40, 30:40] = 0.35, 0.45
    raw = with_lesion - without
    clipped = difference_map(with_lesion, without)
    assert np.abs(raw[:2]).min() > 0.01 and np.abs(raw[-2:]).min() > 0.01
    assert np.abs(clipped[:2]).max() < 1e-6 and np.abs(clipped[-2:]).max() < 1e-6
    np.testing.assert_allclose(clipped[30:40, 30:40], 0.1, atol=1e-6)
    q05, q95 = np.quantile(with_lesion, [0.05, 0.95])
    np.testing.assert_allclose(quantile_clip(with_lesion), np.clip(with_lesion, q05, q95))
    np.testing.assert_allclose(difference_map(with_lesion, without, quantiles=None), raw)
    mean, spread = mean_and_uncertainty(np.stack([clipped, clipped * 0]))
    np.testing.assert_allclose(mean, clipped / 2, atol=1e-6)
    np.testing.assert_allclose(spread, np.abs(clipped) / 2, atol=1e-6)
    assert mean_and_uncertainty(clipped)[1] is None


def test_dilation_is_a_disc_of_the_given_radius():
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    assert dilate_mask(mask, 0).sum() == 1 and dilate_mask(mask, 2).sum() == 13
    with pytest.raises(ValueError, match="whole number of pixels"):
        dilate_mask(mask, -1)


# ------------------------------------------------------------------------------------- removal


def test_removal_on_a_real_slice_keeps_the_slice_and_replaces_the_dilated_nodule(prior32, real_nodule_slice, tmp_path):
    nodule = nodule_mask_from_labels(real_nodule_slice.labels)
    assert 50 < nodule.sum() < 400  # the 21 mm nodule at 256 px
    edit = remove_nodule(prior32, real_nodule_slice.image, nodule, dilation_px=3, num_samples=2, generator=0, **FAST)
    assert edit.kind == "removal" and edit.synthetic
    assert edit.images.shape == (2, 256, 256)  # crop and paste back: the input's size
    regenerated = edit.regenerated_mask
    np.testing.assert_array_equal(regenerated, dilate_mask(nodule, 3))
    real = real_nodule_slice.image / 255.0
    np.testing.assert_allclose(
        edit.images[:, ~regenerated], np.broadcast_to(real[~regenerated], (2, (~regenerated).sum())), atol=1e-5
    )
    assert np.abs(edit.images[:, regenerated] - real[regenerated]).mean() > 0.02
    assert edit.uncertainty is not None and edit.uncertainty[~regenerated].max() < 1e-4
    # After Listing 6's clipping, the difference lives in the regenerated area.
    assert np.abs(edit.difference[~regenerated]).max() < np.abs(edit.difference[regenerated]).max()
    np.testing.assert_allclose(edit.images_hu, -1000 + edit.images * 1400, atol=1e-3)

    written = edit.save(tmp_path / "out", pixel_mm=(1.6, 1.6))
    assert {
        "healthy-0.png",
        "healthy-1.png",
        "healthy.nii.gz",
        "difference.png",
        "difference.nii.gz",
        "uncertainty.png",
        "figure.png",
    } <= set(written)
    assert all(is_synthetic(path) for path in written.values() if path.suffix in (".png", ".gz"))
    with PIL.Image.open(written["figure.png"]) as figure:
        assert figure.text["real_panels"] == "1"
        assert "input (REAL): REAL patient CT" in figure.text["panels"]
        assert "inpainted (SYNTHETIC): SYNTHETIC" in figure.text["panels"]
        assert "difference: derived from a SYNTHETIC image" in figure.text["panels"]
        assert figure.size[0] == 5 * 256 + 4 * 4  # input | mask | inpainted | difference | uncertainty


def test_removal_refuses_bad_masks_and_an_sdm(prior32, real_nodule_slice):
    image, labels = real_nodule_slice.image, real_nodule_slice.labels
    with pytest.raises(ValueError, match="nodule_mask must be binary"):
        remove_nodule(prior32, image, labels, **FAST)
    with pytest.raises(ValueError, match="nodule_mask is empty"):
        remove_nodule(prior32, image, np.zeros_like(labels), **FAST)
    with pytest.raises(ValueError, match="covers the whole slice"):
        remove_nodule(prior32, image, np.ones_like(labels), **FAST)
    with pytest.raises(ValueError, match=r"nodule_mask is \(128, 128\) but the image is \(256, 256\)"):
        remove_nodule(prior32, image, np.ones((128, 128), bool), **FAST)
    with pytest.raises(ValueError, match="spans .* more than the model's 32-px window"):
        remove_nodule(prior32, image, nodule_mask_from_labels(labels), dilation_px=12, **FAST)
    with pytest.raises(ValueError, match="holds a Semantic Diffusion Model"):
        remove_nodule(repaint_pipe(tiny_sdm()), image, nodule_mask_from_labels(labels), **FAST)


# ------------------------------------------------------------------------------------- insertion


def lung_spot(labels: np.ndarray, lung: int = LEFT_LUNG, diameter: float = 14) -> np.ndarray:
    """A disc well inside one lung of the label map."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(labels == lung)
    center = np.unravel_index(np.argmax(depth), depth.shape)
    return disc_mask(labels.shape, center, diameter)


def test_insertion_on_a_real_slice_works_at_the_slice_s_own_resolution(real_nodule_slice, tmp_path):
    # The 32-px SDM inpaints the slice shrunk to its size; the new area comes back upsampled into the 256-px slice.
    pipe = repaint_pipe(tiny_sdm(sample_size=32))
    spot = lung_spot(real_nodule_slice.labels)
    side = real_nodule_slice.image.shape[0]
    edit = insert_nodule(
        pipe, real_nodule_slice.image, real_nodule_slice.labels, spot, num_samples=1, generator=0, **FAST
    )
    assert edit.kind == "insertion" and edit.images.shape == (1, side, side)
    assert (
        edit.label_map.shape == (side, side)
        and (edit.label_map == NODULE).sum() > (real_nodule_slice.labels == NODULE).sum()
    )
    regenerated = edit.regenerated_mask
    assert regenerated.any() and not regenerated.all()
    np.testing.assert_allclose(edit.images[0][~regenerated], edit.input_image[~regenerated], atol=1e-5)
    assert edit.nodule_mask.shape == (side, side) and (edit.nodule_mask <= regenerated).all()
    assert np.abs(edit.images[0][regenerated] - edit.input_image[regenerated]).max() > 0.01  # the area is new
    at_model_size = insert_nodule(
        pipe, real_nodule_slice.image, real_nodule_slice.labels, spot, generator=0, size_handling="resize", **FAST
    )
    assert at_model_size.images.shape == (1, 32, 32)  # "resize": the model's size, as before
    written = edit.save(tmp_path / "inserted")
    assert {"inserted-0.png", "inserted.nii.gz", "label_map.png", "figure.png"} <= set(written)
    assert np.array_equal(np.array(PIL.Image.open(written["label_map.png"])), edit.label_map)
    with PIL.Image.open(written["figure.png"]) as figure:
        assert figure.text["real_panels"] == "1" and "nodule inserted (SYNTHETIC)" in figure.text["panels"]


def test_changing_malignancy_needs_a_7_class_model(real_nodule_slice):
    image, labels = real_nodule_slice.image, real_nodule_slice.labels
    nodule = nodule_mask_from_labels(labels)
    six = repaint_pipe(tiny_sdm(sample_size=32, num_classes=6))
    with pytest.raises(ValueError, match="needs a 7-class malignancy SDM; this model has 6 classes"):
        insert_nodule(six, image, labels, nodule, malignancy="benign", **FAST)
    seven = repaint_pipe(tiny_sdm(sample_size=32, num_classes=7))
    with pytest.raises(ValueError, match="pass malignancy='benign' or 'malignant'"):
        insert_nodule(seven, image, labels, nodule, **FAST)
    malignant_map = real_nodule_slice.malignancy_labels
    assert malignant_map is not None and (malignant_map == MALIGNANT_NODULE).any()  # mean rating 4.25
    with pytest.raises(ValueError, match="holds class 6, which this 6-class SDM does not know"):
        insert_nodule(six, image, malignant_map, nodule, **FAST)
    edit = insert_nodule(seven, image, malignant_map, nodule, malignancy="benign", generator=0, **FAST)
    assert 5 in edit.label_map and MALIGNANT_NODULE not in edit.label_map  # malignant -> benign


def test_insertion_refuses_a_prior_and_a_nodule_outside_the_body(prior32, real_nodule_slice):
    image, labels = real_nodule_slice.image, real_nodule_slice.labels
    spot = lung_spot(labels)
    with pytest.raises(ValueError, match="needs a Semantic Diffusion Model"):
        insert_nodule(prior32, image, labels, spot, **FAST)
    outside = disc_mask(labels.shape, (3, 3), 4)
    with pytest.raises(ValueError, match="outside the body"):
        insert_nodule(repaint_pipe(tiny_sdm(sample_size=32)), image, labels, outside, **FAST)


# ------------------------------------------------------------------------------------- the output folder


def small_edit(num_samples: int):
    """A NoduleEdit of ``num_samples`` made by hand (no model): only its files are checked."""
    from lung_diffusers.inpainting import NoduleEdit

    rng = np.random.default_rng(num_samples)
    images = rng.uniform(0, 1, (num_samples, 16, 16)).astype(np.float32)
    nodule = disc_mask((16, 16), (8, 8), 4)
    difference, uncertainty = mean_and_uncertainty(np.stack([difference_map(images[0], image) for image in images]))
    return NoduleEdit("removal", images[0], nodule, dilate_mask(nodule, 1), images, difference, uncertainty)


def test_saving_refuses_a_users_files_and_a_rerun_leaves_no_stale_samples(tmp_path):
    from lung_diffusers.inpainting import AnomalyMap

    (tmp_path / "figure.png").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        small_edit(1).save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"] and (tmp_path / "figure.png").read_text() == "mine"

    folder = tmp_path / "out"
    assert {"healthy-2.png", "uncertainty.png", "uncertainty.nii.gz"} <= set(small_edit(3).save(folder))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        small_edit(1).save(folder)
    written = small_edit(1).save(folder, overwrite=True)  # fewer samples: nothing of the first run is left
    assert {p.name for p in folder.iterdir()} == set(written) | {".lung-diffusers-manifest.json"}
    assert "healthy-1.png" not in written and "uncertainty.png" not in written

    edit = small_edit(2)  # AnomalyMap shares the writer
    anomaly = AnomalyMap(edit.input_image, edit.images, edit.difference, edit.uncertainty, noise_level=0.3)
    with pytest.raises(FileExistsError, match="earlier remove-nodule run"):
        anomaly.save(folder)
    written = anomaly.save(folder, overwrite=True)
    assert {p.name for p in folder.iterdir()} == set(written) | {".lung-diffusers-manifest.json"}
