"""The result of editing a nodule in a real slice (removal or insertion), and what they share: mask checks,
dilation, running the RePaint pipeline, and writing the outputs marked synthetic."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..ct import ALL_NODULE_CLASSES, HU_WINDOW, as_window_image, hu_from_image, resize_binary_mask
from ..output_folder import OutputFiles, output_folder
from ..synthetic_marker import save_synthetic_nifti, save_synthetic_png
from .difference_maps import difference_map, mean_and_uncertainty
from .figure import Panel, difference_rgb, grey_rgb, magnitude_rgb, region_overlay_rgb, save_figure, view_box

EDIT_KINDS = ("removal", "insertion")


@dataclass
class NoduleEdit:
    """A nodule removed from (or inserted into) a real slice, with its difference map.

    All maps are ``(H, W)`` at the output size (see the pipeline's ``size_handling``); images are window images in
    [0, 1] (0 = ``hu_window[0]``, 1 = ``hu_window[1]``).

    Attributes:
        kind: ``"removal"`` or ``"insertion"``.
        input_image: the **real** slice, as the model saw it (resized for ``size_handling="resize"``).
        nodule_mask: bool, the nodule region (removed, or where the nodule was inserted).
        regenerated_mask: bool, the area that was generated: the nodule mask dilated.
        images: ``(N, H, W)`` the **synthetic** results: healthy counterfactuals, or slices with the inserted nodule.
        difference: the mean over samples of "with nodule - without nodule", each image clipped to its own 5 % / 95 %
            quantiles first (thesis Listing 6): the nodule is positive. In window units (x 1400 for HU).
        uncertainty: per-pixel standard deviation of the samples' difference maps, or `None` for one sample.
        label_map: insertion only: the edited label map the SDM was conditioned on (uint8).
        hu_window: the HU window of the images.
        synthetic: always `True`.
    """

    kind: str
    input_image: np.ndarray
    nodule_mask: np.ndarray
    regenerated_mask: np.ndarray
    images: np.ndarray
    difference: np.ndarray
    uncertainty: np.ndarray | None = None
    label_map: np.ndarray | None = None
    hu_window: tuple[float, float] = HU_WINDOW
    synthetic: bool = field(default=True, init=False)

    def __post_init__(self):
        if self.kind not in EDIT_KINDS:
            raise ValueError(f"kind must be one of {EDIT_KINDS}, got {self.kind!r}")

    @property
    def images_hu(self) -> np.ndarray:
        """The synthetic results in Hounsfield units, ``(N, H, W)``."""
        return hu_from_image(self.images, self.hu_window)

    @property
    def result_name(self) -> str:
        return "healthy" if self.kind == "removal" else "inserted"

    def panels(self) -> list[Panel]:
        """input (real) | regenerated area | first result (synthetic) | difference [| uncertainty]."""
        if self.kind == "removal":
            mask_panel = Panel(
                "regenerated area",
                region_overlay_rgb(self.input_image, self.regenerated_mask, self.nodule_mask),
                "mask",
            )
        else:
            from ..data.contact_sheet import overlay_mask

            labels = self.label_map if self.label_map is not None else np.zeros(self.input_image.shape, np.uint8)
            mask_panel = Panel("edited label map", overlay_mask(grey_rgb(self.input_image)[..., 0], labels), "mask")
        panels = [
            Panel("input (REAL)", grey_rgb(self.input_image), "real"),
            mask_panel,
            Panel(
                f"{'inpainted' if self.kind == 'removal' else 'nodule inserted'} (SYNTHETIC)",
                grey_rgb(self.images[0]),
                "synthetic",
            ),
            Panel("difference", difference_rgb(self.difference), "derived"),
        ]
        if self.uncertainty is not None:
            panels.append(
                Panel(f"uncertainty ({len(self.images)} samples)", magnitude_rgb(self.uncertainty), "derived")
            )
        return panels

    def save_figure(self, path: str | os.PathLike, zoom: bool | None = None, panel_size: int = 256) -> Path:
        """The figure input | mask | result | difference (| uncertainty), as a PNG marked synthetic whose ``panels`` and
        ``real_panels`` text chunks say which panel is real. ``zoom`` (default: for slices over 128 px) shows the
        area around the edit rather than the whole slice."""
        zoom = self.input_image.shape[0] > 128 if zoom is None else zoom
        box = view_box(self.regenerated_mask) if zoom else None
        scale = float(np.abs(self.difference).max())
        metadata = {
            "edit": self.kind,
            "difference": f"with nodule - without nodule after 5%/95% quantile clipping; red +, blue -, full colour = {scale:.4f} window units",
        }
        return save_figure(self.panels(), path, panel_size=panel_size, box=box, metadata=metadata)

    def save(
        self,
        folder: str | os.PathLike,
        pixel_mm: Sequence[float] | None = None,
        zoom: bool | None = None,
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Write every output into ``folder``, each marked synthetic:

        ``<result>-<k>.png`` per sample and ``<result>.nii.gz`` (all samples, HU), where ``<result>`` is ``healthy`` or
        ``inserted``; ``difference.png`` / ``difference.nii.gz`` (HU); ``uncertainty.*`` for several samples;
        ``label_map.png`` (insertion); ``figure.png``. ``pixel_mm`` (row, column) goes into the NIfTI spacing.

        ``folder`` must be new or empty, or hold an earlier run's outputs and ``overwrite=True``: then exactly
        those are replaced (see :mod:`lung_diffusers.output_folder`); other files are never touched.
        """
        tool = "remove-nodule" if self.kind == "removal" else "insert-nodule"
        with output_folder(folder, tool, overwrite) as out:
            written = save_samples_and_maps(
                out, self.result_name, self.images, self.images_hu, "difference", self.difference,
                self.uncertainty, self.hu_window, pixel_mm,
            )  # fmt: skip
            if self.label_map is not None:
                written["label_map.png"] = save_synthetic_png(
                    self.label_map.astype(np.uint8), out.path("label_map.png")
                )
            written["figure.png"] = self.save_figure(out.path("figure.png"), zoom=zoom)
        return written


def save_samples_and_maps(
    out: OutputFiles,
    result_name: str,
    images: np.ndarray,
    images_hu: np.ndarray,
    map_name: str,
    difference: np.ndarray,
    uncertainty: np.ndarray | None,
    hu_window: Sequence[float],
    pixel_mm: Sequence[float] | None = None,
) -> dict[str, Path]:
    """The files an edit or an anomaly map writes into its output folder ``out`` (opened with
    :func:`~lung_diffusers.output_folder.output_folder`), each marked synthetic: ``<result_name>-<k>.png`` per
    sample, ``<result_name>.nii.gz`` (all samples, HU), ``<map_name>.png`` / ``.nii.gz`` (the difference, HU) and,
    for several samples, ``uncertainty.png`` / ``.nii.gz``. ``pixel_mm`` (row, column) goes into the NIfTI spacing."""
    spacing_2d = (1.0, 1.0) if pixel_mm is None else (float(pixel_mm[1]), float(pixel_mm[0]))  # NIfTI: x, y
    span = hu_window[1] - hu_window[0]
    written = {}
    for k, image in enumerate(images):
        written[f"{result_name}-{k}.png"] = save_synthetic_png(image, out.path(f"{result_name}-{k}.png"))
    written[f"{result_name}.nii.gz"] = save_synthetic_nifti(
        images_hu, out.path(f"{result_name}.nii.gz"), spacing=(*spacing_2d, 1.0)
    )
    written[f"{map_name}.png"] = save_synthetic_png(difference_rgb(difference), out.path(f"{map_name}.png"))
    written[f"{map_name}.nii.gz"] = save_synthetic_nifti(
        difference * span, out.path(f"{map_name}.nii.gz"), spacing=spacing_2d
    )
    if uncertainty is not None:
        written["uncertainty.png"] = save_synthetic_png(magnitude_rgb(uncertainty), out.path("uncertainty.png"))
        written["uncertainty.nii.gz"] = save_synthetic_nifti(
            uncertainty * span, out.path("uncertainty.nii.gz"), spacing=spacing_2d
        )
    return written


def binary_nodule_mask(nodule_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Validate a ``nodule_mask`` (1 = the nodule region: bool, 0/1, or uint8 0/255) of the image's ``shape``."""
    mask = np.asarray(nodule_mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != tuple(shape):
        raise ValueError(f"nodule_mask is {mask.shape} but the image is {tuple(shape)}; they must match")
    values = np.unique(mask)
    if mask.dtype != bool and not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        raise ValueError(
            f"nodule_mask must be binary (1 = nodule; 0/1, 0/255 or bool), got values {values[:8].tolist()}; "
            "for a label map use nodule_mask_from_labels(label_map)"
        )
    mask = mask > 0
    if not mask.any():
        raise ValueError("nodule_mask is empty (all 0): there is no nodule region to edit")
    if mask.all():
        raise ValueError("nodule_mask covers the whole slice (all 1): nothing known is left to inpaint from")
    return mask


def nodule_mask_from_labels(label_map: np.ndarray, nodule_classes: Sequence[int] = ALL_NODULE_CLASSES) -> np.ndarray:
    """The nodule pixels of a recipe label map (class 5, or 5 benign / 6 malignant)."""
    return np.isin(np.asarray(label_map), list(nodule_classes))


def dilate_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Dilate a binary mask by a disc of ``radius_px`` pixels (0: unchanged)."""
    from scipy import ndimage
    from skimage.morphology import disk

    if isinstance(radius_px, bool) or not isinstance(radius_px, (int, np.integer)) or radius_px < 0:
        raise ValueError(f"dilation must be a whole number of pixels >= 0, got {radius_px!r}")
    mask = np.asarray(mask, bool)
    return ndimage.binary_dilation(mask, structure=disk(int(radius_px))) if radius_px else mask.copy()


def as_generator(seed_or_generator) -> torch.Generator | list[torch.Generator] | None:
    """An int seed -> a CPU ``torch.Generator``; generators and `None` pass through."""
    if isinstance(seed_or_generator, (int, np.integer)) and not isinstance(seed_or_generator, bool):
        return torch.Generator().manual_seed(int(seed_or_generator))
    return seed_or_generator


def run_edit(
    pipe,
    kind: str,
    image: np.ndarray,
    nodule_mask: np.ndarray,
    dilation_px: int,
    num_samples: int,
    generator,
    segmentation: np.ndarray | None = None,
    **pipe_kwargs,
) -> NoduleEdit:
    """Inpaint the dilated nodule region of ``image`` with ``pipe`` and build the :class:`NoduleEdit`."""
    image = as_window_image(image)
    nodule = binary_nodule_mask(nodule_mask, image.shape)
    regenerate = dilate_mask(nodule, dilation_px)
    if regenerate.all():
        raise ValueError(
            f"the nodule mask dilated by {dilation_px} px covers the whole slice: nothing known is left; dilate less"
        )
    out = pipe(
        image,
        ~regenerate,
        segmentation=segmentation,
        num_images_per_prompt=num_samples,
        generator=as_generator(generator),
        output_type="np",
        **pipe_kwargs,
    )
    results = out.images[..., 0]
    shown = out.input_images[0, ..., 0]
    size = shown.shape[0]
    nodule = resize_binary_mask(nodule, size) if nodule.shape != shown.shape else nodule
    if kind == "removal":
        differences = [difference_map(shown, healthy) for healthy in results]
    else:
        differences = [difference_map(inserted, shown) for inserted in results]
    mean, spread = mean_and_uncertainty(np.stack(differences))
    label_map = None
    if segmentation is not None:
        from ..ct import resize_label_map

        label_map = (
            resize_label_map(np.asarray(segmentation, np.uint8), size)
            if segmentation.shape != shown.shape
            else np.asarray(segmentation, np.uint8)
        )
    return NoduleEdit(
        kind=kind,
        input_image=shown,
        nodule_mask=nodule,
        regenerated_mask=out.regenerated_masks[0],
        images=results,
        difference=mean,
        uncertainty=spread,
        label_map=label_map,
        hu_window=tuple(pipe.config.hu_window),
    )
