"""``lung-diffusers remove-nodule`` / ``insert-nodule``: edit a nodule in a real CT slice; ``anomaly-map``: a
mask-free anomaly map of a slice from the healthy prior (AnoDDPM-style).

All read the slice from a PNG (the recipe's lung-window slices), a NIfTI / MetaImage file or a DICOM series
(``--slice-index``), resize it to the recipe's size (``--image-size``, 256 by default) as the data recipe does,
and write their outputs marked synthetic into ``--output`` (see :meth:`NoduleEdit.save`): a new or empty folder,
or one of an earlier run's with ``--overwrite`` (:mod:`lung_diffusers.output_folder`), checked before any sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..scheduler_registry import scheduler_names
from .settings import (
    DEFAULT_INSERTION_DILATION_PX,
    DEFAULT_NOISE_LEVEL,
    DEFAULT_REMOVAL_DILATION_PX,
    RECIPE_IMAGE_SIZE,
)

SCHEDULER_CHOICES = scheduler_names(repaint=True)
# LungRePaintPipeline's SIZE_HANDLING, written out so that building the parser does not import torch (tested equal).
SIZE_HANDLING = ("crop", "resample", "resize", "none")


def register(subparsers) -> None:
    remove = subparsers.add_parser(
        "remove-nodule",
        help="replace a nodule by healthy tissue (RePaint with the healthy prior) and map the difference",
        description=(
            "Inpaint the (dilated) nodule region of a real slice with the healthy prior: the prior sees a model-sized "
            "window around the nodule at full resolution, pasted back, so the outputs have the --image-size. Writes "
            "healthy-<k>.png, healthy.nii.gz (HU), difference.png/.nii.gz, uncertainty.* (several samples) and "
            "figure.png (input | mask | inpainted | difference), all marked synthetic."
        ),
    )
    _slice_arguments(remove)
    where = remove.add_mutually_exclusive_group(required=True)
    where.add_argument("--nodule-mask", type=Path, help="binary mask of the nodule (PNG or NIfTI; nonzero = nodule)")
    where.add_argument(
        "--label-map", type=Path, help="the slice's label map (the recipe's mask); classes 5/6 are the nodule"
    )
    _edit_arguments(remove, DEFAULT_REMOVAL_DILATION_PX)
    remove.set_defaults(func=run_remove_nodule)

    insert = subparsers.add_parser(
        "insert-nodule",
        help="insert a nodule into a real slice (RePaint with a Semantic Diffusion Model)",
        description=(
            "Edit the slice's label map (the nodule gets the nodule class) and inpaint the dilated nodule area with "
            "the SDM conditioned on the edited map. An SDM sees whole slices at its own size (e.g. 64 px): it inpaints the "
            "slice and map resized to it, and the new area is pasted back, upsampled, so the outputs have the slice's "
            "size (--size-handling resize: the model's). Writes inserted-<k>.png, inserted.nii.gz, "
            "label_map.png, difference.*, figure.png, all marked synthetic."
        ),
    )
    _slice_arguments(insert)
    insert.add_argument(
        "--label-map", type=Path, required=True, help="the slice's label map (PNG or NIfTI, recipe classes)"
    )
    where = insert.add_mutually_exclusive_group(required=True)
    where.add_argument("--nodule-mask", type=Path, help="binary mask of where the nodule goes (nonzero = nodule)")
    where.add_argument(
        "--nodule-center",
        type=float,
        nargs=2,
        metavar=("ROW", "COLUMN"),
        help="a round nodule centred here (input pixels)",
    )
    insert.add_argument(
        "--nodule-diameter-px",
        type=float,
        default=12.0,
        help="diameter with --nodule-center (input pixels; default 12)",
    )
    insert.add_argument(
        "--malignancy",
        choices=("benign", "malignant"),
        help="nodule class for a 7-class malignancy SDM (required there)",
    )
    _edit_arguments(insert, DEFAULT_INSERTION_DILATION_PX)
    insert.set_defaults(func=run_insert_nodule)

    anomaly = subparsers.add_parser(
        "anomaly-map",
        help="a mask-free anomaly map: noise the slice part way, denoise it with the healthy prior, compare",
        description=(
            "AnoDDPM-style: the slice is noised to --noise-level of the diffusion chain and denoised by the healthy "
            "prior, at the slice's own size (--image-size). What the prior cannot explain shows in the difference. "
            "Writes reconstruction-<k>.png, reconstruction.nii.gz, anomaly.png/.nii.gz, uncertainty.png (several "
            "samples) and figure.png, all marked synthetic."
        ),
    )
    _slice_arguments(anomaly)
    anomaly.add_argument(
        "--noise-level",
        type=float,
        default=DEFAULT_NOISE_LEVEL,
        help=f"fraction of the chain, in (0, 1] (default {DEFAULT_NOISE_LEVEL})",
    )
    anomaly.add_argument("--steps", type=int, default=50, help="inference steps of the whole chain (default 50)")
    anomaly.add_argument(
        "--samples", type=int, default=1, help="reconstructions to draw; more than one adds an uncertainty map"
    )
    anomaly.add_argument("--eta", type=float, default=0.0, help="DDIM noise weight (default 0)")
    anomaly.add_argument(
        "--scheduler", choices=scheduler_names(image_to_image=True), help="swap the pipeline's scheduler (default: keep it)"
    )
    anomaly.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    anomaly.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    anomaly.add_argument("--quiet", action="store_true", help="no progress bar")
    anomaly.set_defaults(func=run_anomaly_map)


def _slice_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        required=True,
        help="pipeline folder (or Hub id): a DDPMPipeline / LungSDMPipeline / LungRePaintPipeline",
    )
    parser.add_argument(
        "--image",
        type=Path,
        required=True,
        help="the real slice: PNG (lung window), NIfTI/MetaImage file, or DICOM folder",
    )
    parser.add_argument(
        "--slice-index",
        type=int,
        help="axial slice of a volume or DICOM series (0 = most inferior); also applied to volume masks",
    )
    parser.add_argument("--series-uid", help="the series, when a DICOM folder holds several")
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="folder for the outputs: new, empty, or an earlier run's (with --overwrite)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier run in --output (only the files its manifest lists)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=RECIPE_IMAGE_SIZE,
        help=f"resize the slice to this size first, as the data recipe does (default {RECIPE_IMAGE_SIZE}; 0 keeps the input size)",
    )


def _edit_arguments(parser: argparse.ArgumentParser, dilation: int) -> None:
    parser.add_argument(
        "--dilation-px",
        type=int,
        default=dilation,
        help=f"grow the nodule mask by this radius first (default {dilation})",
    )
    parser.add_argument(
        "--samples", type=int, default=1, help="samples to draw; more than one adds an uncertainty map"
    )
    parser.add_argument(
        "--preset",
        choices=("cpu", "paper"),
        default="cpu",
        help="RePaint settings: cpu = 50/5/5 (default), paper = 250/10/10",
    )
    parser.add_argument("--steps", type=int, help="num_inference_steps (overrides the preset)")
    parser.add_argument("--jump-length", type=int, help="jump_length (overrides the preset)")
    parser.add_argument("--jump-n-sample", type=int, help="jump_n_sample (overrides the preset)")
    parser.add_argument("--eta", type=float, default=0.0, help="noise weight of DDIM / RePaint schedulers (default 0)")
    parser.add_argument(
        "--scheduler", choices=SCHEDULER_CHOICES, help="swap the pipeline's scheduler (default: keep it)"
    )
    parser.add_argument(
        "--size-handling", choices=SIZE_HANDLING, help="default: crop for a prior, resample for an SDM (see LungRePaintPipeline)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--no-zoom", action="store_true", help="show the whole slice in figure.png, not the area around the edit"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------- running


def run_remove_nodule(args: argparse.Namespace) -> int:
    from .nodule_edit import nodule_mask_from_labels
    from .nodule_removal import remove_nodule

    _check_output(args, "remove-nodule")
    ct, pixel_mm = _read_slice(args)
    if args.nodule_mask is not None:
        nodule = _read_mask(args.nodule_mask, args, ct.image.shape)
    else:
        nodule = nodule_mask_from_labels(_read_labels(args.label_map, args, ct.image.shape))
        if not nodule.any():
            raise ValueError(f"the label map {args.label_map} has no nodule (class 5 or 6) in this slice")
    image, nodule, _ = _to_working_size(args, ct.image, nodule=nodule)
    pipe = _load_pipeline(args)
    edit = remove_nodule(
        pipe, image, nodule, dilation_px=args.dilation_px, num_samples=args.samples, **_repaint_settings(args)
    )
    return _write(args, edit, pixel_mm, ct, image.shape[0])


def run_insert_nodule(args: argparse.Namespace) -> int:
    import numpy as np

    from .nodule_insertion import disc_mask, insert_nodule

    _check_output(args, "insert-nodule")
    ct, pixel_mm = _read_slice(args)
    labels = _read_labels(args.label_map, args, ct.image.shape)
    if args.nodule_mask is not None:
        nodule = _read_mask(args.nodule_mask, args, ct.image.shape)
    else:
        if args.nodule_diameter_px <= 0:
            raise ValueError(f"--nodule-diameter-px must be positive, got {args.nodule_diameter_px}")
        nodule = disc_mask(ct.image.shape, tuple(args.nodule_center), args.nodule_diameter_px)
        if not nodule.any():
            raise ValueError(f"--nodule-center {args.nodule_center} lies outside the {ct.image.shape} slice")
    image, nodule, labels = _to_working_size(args, ct.image, nodule=nodule, labels=labels)
    pipe = _load_pipeline(args)
    edit = insert_nodule(
        pipe,
        image,
        np.asarray(labels),
        nodule,
        malignancy=args.malignancy,
        dilation_px=args.dilation_px,
        num_samples=args.samples,
        **_repaint_settings(args),
    )
    return _write(args, edit, pixel_mm, ct, image.shape[0])


def run_anomaly_map(args: argparse.Namespace) -> int:
    from .anomaly_maps import anomaly_map

    _check_output(args, "anomaly-map")
    ct, pixel_mm = _read_slice(args)
    image, _, _ = _to_working_size(args, ct.image)
    pipe = _load_pipeline(args)
    result = anomaly_map(pipe, image, args.noise_level, args.steps, args.samples, args.seed, args.eta)
    if pixel_mm is not None:
        pixel_mm = tuple(p * ct.image.shape[i] / image.shape[i] for i, p in enumerate(pixel_mm))
    written = result.save(args.output, pixel_mm=pixel_mm, overwrite=args.overwrite)
    print(
        f"anomaly map of {ct.source} at noise level {args.noise_level:g}: {image.shape[0]}x{image.shape[1]} px, marked synthetic"
    )
    for path in written.values():
        print(path)
    return 0


def _check_output(args, tool: str) -> None:
    from ..output_folder import check_output_folder

    check_output_folder(args.output, tool, args.overwrite)  # refused now, not after minutes of sampling


def _read_slice(args):
    from ..ct import read_ct_slice

    if args.image_size < 0:
        raise ValueError(f"--image-size must be 0 (keep) or a positive size, got {args.image_size}")
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    ct = read_ct_slice(args.image, args.slice_index, args.series_uid)
    return ct, ct.pixel_mm


def _read_mask(path: Path, args, shape):
    import numpy as np

    from ..ct import read_label_slice

    mask = read_label_slice(path, args.slice_index)
    _check_shape(mask, shape, path, args.image_size)
    values = set(np.unique(mask).tolist())
    if not values <= {0, 1, 255}:
        raise ValueError(
            f"{path} is not a binary mask (values {sorted(values)[:8]}); pass a label map with --label-map instead"
        )
    return mask > 0


def _read_labels(path: Path, args, shape):
    from ..ct import MALIGNANCY_LABEL_NAMES, check_label_values, read_label_slice

    labels = read_label_slice(path, args.slice_index)
    _check_shape(labels, shape, path, args.image_size)
    # Before anything reads classes from it: a map scaled for viewing (x50) would otherwise have "no nodule".
    check_label_values(labels, len(MALIGNANCY_LABEL_NAMES), f"in {path} (the recipe's classes 0-6)")
    return labels


def _check_shape(mask, shape, path: Path, image_size: int) -> None:
    # Masks may come at the input's size or already at the working size (the recipe's 256-px masks of a
    # 512-px DICOM slice).
    allowed = {tuple(shape)} | ({(image_size, image_size)} if image_size else set())
    if mask.shape not in allowed:
        sizes = " or ".join(f"{h}x{w}" for h, w in sorted(allowed))
        raise ValueError(f"{path} is {mask.shape[0]}x{mask.shape[1]}; it must match the image ({sizes})")


def _to_working_size(args, image, nodule=None, labels=None):
    """Resize to --image-size as the data recipe does: area averaging for the slice, area-weighted majority for
    the label map, and any coverage for the nodule mask (so a small nodule cannot vanish)."""
    from ..ct import resize_binary_mask, resize_label_map, resize_slice

    size = args.image_size
    if size and image.shape != (size, size):
        if image.shape[0] != image.shape[1]:
            raise ValueError(
                f"--image-size resizes square slices only, got {image.shape[0]}x{image.shape[1]}; pass --image-size 0"
            )
        image = resize_slice(image, size)
        nodule = None if nodule is None else resize_binary_mask(nodule, size)
        labels = None if labels is None else resize_label_map(labels, size)
    for name, mask in (("nodule mask", nodule), ("label map", labels)):
        if mask is not None and mask.shape != image.shape:
            raise ValueError(
                f"the {name} is {mask.shape[0]}x{mask.shape[1]} but the slice is {image.shape[0]}x{image.shape[1]}"
            )
    return image, nodule, labels


def _load_pipeline(args):
    import torch

    from ..pipelines import LungRePaintPipeline, load_pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(args.pipeline, args.scheduler, device, LungRePaintPipeline, progress_bar=not args.quiet)
    return pipe


def _repaint_settings(args) -> dict:
    from ..pipelines.pipeline_lung_repaint import REPAINT_PRESETS

    settings = dict(REPAINT_PRESETS[args.preset])
    for key, value in (
        ("num_inference_steps", args.steps),
        ("jump_length", args.jump_length),
        ("jump_n_sample", args.jump_n_sample),
    ):
        if value is not None:
            settings[key] = value
    return {**settings, "eta": args.eta, "generator": args.seed, "size_handling": args.size_handling}


def _write(args, edit, pixel_mm, ct, working_size: int) -> int:
    if pixel_mm is not None:
        # The outputs' pixels: the input's, scaled by every resize on the way (to --image-size, then to the model).
        out_size = edit.images.shape[-1]
        pixel_mm = tuple(p * ct.image.shape[i] / out_size for i, p in enumerate(pixel_mm))
    written = edit.save(args.output, pixel_mm=pixel_mm, zoom=False if args.no_zoom else None, overwrite=args.overwrite)
    size = f"{edit.images.shape[-2]}x{edit.images.shape[-1]}"
    print(
        f"{edit.kind} of {ct.source}: {len(edit.images)} sample(s) of {size} px (from {working_size} px), marked synthetic"
    )
    for path in written.values():
        print(path)
    return 0
