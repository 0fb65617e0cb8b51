"""Diversity (issue 18, part 2): how alike a model's samples of one mask are across seeds, against how alike real
neighbouring slices are.

* **Per mask**: the mean MS-SSIM over all unordered pairs of its seeds' images (:func:`mean_pairwise_ms_ssim`).
* **Reference**: MS-SSIM of real slices of one scan 2.5 mm apart (:func:`real_neighbour_similarity`). Two such
  slices show nearly the same anatomy, so a mask whose seeds are more alike than that has seeds that vary less than
  one step through a real chest.
* **Verdict** (:func:`diversity_summary`): a mask is flagged when its seeds' MS-SSIM exceeds the reference's median,
  or reaches :data:`IDENTICAL_MS_SSIM`; the sampler is ``collapsed`` when at least half of the masks reach it.
  At 64 px MS-SSIM weighs the coarse scales (anatomy, which the mask fixes) most: real 2.5-mm neighbours score about
  0.99, so only seeds that differ in little more than fine texture are flagged.

MS-SSIM is torchmetrics' (a Gaussian window of sigma 1.5, ``data_range=1``), on slices in [0, 1]. Its defaults
(kernel 11, 5 scales) need slices of 176 px or more; smaller slices get kernel 5 and 4 scales
(:func:`ms_ssim_settings`). Compare figures only between slices of one size: the settings change with it.

torch and torchmetrics (``pip install 'lung-diffusers[eval]'``) are imported on use; matplotlib for the figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_write import atomic_file
from ..synthetic_marker import synthetic_png_text

# torchmetrics' default scale weights (Wang et al. 2003), finest scale first.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Seeds this alike are one image up to jitter: at 64 px a copy with 0.01 (14 HU) of Gaussian noise scores 0.9993 and
# one with 0.02 scores 0.997, while real slices of one scan stay below it (measured on the mini data: 2.5 mm apart,
# median 0.989 and maximum 0.996; 1.25 mm apart, maximum 0.998). 0.99 would call half the real 2.5-mm pairs copies.
IDENTICAL_MS_SSIM = 0.999
# The share of masks with identical seeds at which the whole sampler counts as collapsed.
COLLAPSED_SHARE = 0.5
# Pairs per MS-SSIM batch: bounds memory on large sets (a pair of 256-px slices costs ~0.5 MB per scale).
PAIRS_PER_BATCH = 256
THRESHOLD_RULE = (
    "median MS-SSIM of real slice pairs of one scan 2.5 mm apart; a mask is flagged above it, or when its seeds are "
    f"identical (MS-SSIM >= {IDENTICAL_MS_SSIM:g})"
)


def check_slices(images, name: str = "images", min_count: int = 1) -> np.ndarray:
    """``images`` as a float ``(S, H, W)`` array of ``S >= min_count`` finite slices in [0, 1], or a `ValueError`.

    Float arrays keep their precision (float32 stays float32: training sets can be large); others become float32.
    """
    array = np.asarray(images)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array of slices in [0, 1], got dtype {array.dtype}")
    if array.ndim != 3:
        raise ValueError(f"{name} must have shape (slices, height, width), got {array.shape}")
    if array.shape[0] < min_count:
        raise ValueError(f"{name} needs at least {min_count} slices, got {array.shape[0]}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    if array.size and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1] (window images; grey levels divided by 255), got values in "
            f"[{array.min():.3g}, {array.max():.3g}]"
        )
    return array


def ms_ssim_settings(height: int, width: int) -> dict:
    """The ``kernel_size`` and scale weights (``betas``) given to torchmetrics for ``height x width`` slices.

    torchmetrics accepts a setting when ``side // (scales - 1) ** 2 > kernel_size - 1``, so its defaults (an 11-px
    kernel, 5 scales) need sides of 176 px or more (its message says "larger than 160"), and are used there (256 px).
    Smaller slices get ``kernel_size=5`` and the 4 finest scales (their weights scaled to sum to 1, so identical
    slices still score 1), which that check accepts from 45 px.

    With its default Gaussian window torchmetrics uses ``kernel_size`` only for that check (its documentation: the
    kernel size is ignored for a Gaussian kernel): the window itself is set by ``sigma=1.5`` (11 px) in both
    settings, so they differ only in the number of scales. The coarsest scale must also stay wider than the window's
    5-px reflection padding, so 4 scales need 48 px or more; the 64-px models are well inside.
    """
    side = min(int(height), int(width))
    if side // (len(MS_SSIM_BETAS) - 1) ** 2 > 11 - 1:
        return {"kernel_size": 11, "betas": MS_SSIM_BETAS}
    if side < 48:
        raise ValueError(f"MS-SSIM needs slices of at least 48 px, got {height}x{width}; compare larger slices")
    betas = MS_SSIM_BETAS[:4]
    return {"kernel_size": 5, "betas": tuple(float(b / sum(betas)) for b in betas)}


def pair_ms_ssim(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """MS-SSIM of ``first[i]`` and ``second[i]`` for each ``i`` (two ``(N, H, W)`` stacks in [0, 1]), batched."""
    try:
        import torch
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure
    except ImportError as error:
        raise ImportError(
            f"MS-SSIM needs torch and torchmetrics ({error.name} is missing): pip install 'lung-diffusers[eval]'"
        ) from error
    first, second = check_slices(first, "first"), check_slices(second, "second")
    if first.shape != second.shape:
        raise ValueError(f"the two stacks must have one shape, got {first.shape} and {second.shape}")
    settings = ms_ssim_settings(*first.shape[1:])
    scores = []
    for start in range(0, len(first), PAIRS_PER_BATCH):
        a, b = (torch.from_numpy(x[start : start + PAIRS_PER_BATCH, None]).float() for x in (first, second))
        with torch.no_grad():
            score = multiscale_structural_similarity_index_measure(a, b, data_range=1.0, reduction="none", **settings)
        scores.append(score.double().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def mean_pairwise_ms_ssim(images) -> float:
    """The mean MS-SSIM over all unordered pairs of ``images``, ``(S, H, W)`` slices in [0, 1] with ``S >= 2``
    (e.g. one mask's samples for ``S`` seeds)."""
    images = check_slices(images, min_count=2)
    first, second = np.array(list(itertools.combinations(range(len(images)), 2))).T
    return float(pair_ms_ssim(images[first], images[second]).mean())


def neighbour_pairs(
    slice_z_mm: Sequence[float], scan_ids: Sequence, gap_mm: float = 2.5, tolerance_mm: float = 0.5
) -> np.ndarray:
    """``(P, 2)`` indices of slice pairs of one scan about ``gap_mm`` apart (see :func:`real_neighbour_similarity`)."""
    z = np.asarray(slice_z_mm, np.float64)
    scans = np.asarray(scan_ids)
    if z.ndim != 1 or scans.shape != z.shape:
        raise ValueError(f"slice_z_mm and scan_ids must be 1-D and of one length, got {z.shape} and {scans.shape}")
    if not (gap_mm > 0 and 0 <= tolerance_mm < gap_mm):
        raise ValueError(f"need gap_mm > 0 and 0 <= tolerance_mm < gap_mm, got {gap_mm} and {tolerance_mm}")
    pairs = []
    known = np.isfinite(z)  # a slice of unknown position (NaN) cannot be paired
    for scan in np.unique(scans[known]):
        members = np.flatnonzero((scans == scan) & known)
        for i in members:
            above = members[z[members] > z[i]]
            if above.size:
                miss = np.abs(z[above] - z[i] - gap_mm)
                if miss.min() <= tolerance_mm:
                    pairs.append((i, above[np.argmin(miss)]))
    return np.array(pairs, np.int64).reshape(-1, 2)


def real_neighbour_similarity(
    images, slice_z_mm: Sequence[float], scan_ids: Sequence, gap_mm: float = 2.5, tolerance_mm: float = 0.5
) -> np.ndarray:
    """MS-SSIM of real slice pairs of one scan ``gap_mm`` apart: the reference :func:`diversity_summary` flags against.

    Each slice is paired with the slice of its scan above it (larger z) whose distance is nearest ``gap_mm``, when it
    is within ``tolerance_mm`` of it; each pair is counted once, and slices of unknown position (NaN) are left out.
    The default 0.5 mm finds pairs at every LUNA16 slice spacing (0.625 to 2.5 mm: some whole number of slices lies
    within 0.5 mm of 2.5 mm) while keeping the distance close to the one the verdict speaks of, since similarity
    falls with distance (median MS-SSIM at 64 px on the mini data: 0.996 at 1.25 mm, 0.989 at 2.5 mm, 0.970 at 5 mm).

    Args:
        images: ``(N, H, W)`` real slices in [0, 1], at the size the synthetic slices are compared at.
        slice_z_mm: each slice's z position (the recipe's ``slice_z_mm``).
        scan_ids: each slice's scan (series UID or patient id).

    Returns:
        One MS-SSIM per pair (empty when no two slices are ``gap_mm`` apart).
    """
    images = check_slices(images)
    if len(slice_z_mm) != len(images):
        raise ValueError(f"need one slice_z_mm per image: {len(slice_z_mm)} positions for {len(images)} images")
    pairs = neighbour_pairs(slice_z_mm, scan_ids, gap_mm, tolerance_mm)
    if not len(pairs):
        return np.zeros(0)
    return pair_ms_ssim(images[pairs[:, 0]], images[pairs[:, 1]])


@dataclass(frozen=True)
class DiversityResult:
    """Seeds' similarity per mask against the real reference (see :func:`diversity_summary`).

    Attributes:
        per_mask: each mask's mean pairwise MS-SSIM across its seeds.
        seeds: each mask's number of seeds.
        threshold: the reference's median; masks above it are flagged.
        flagged: the masks whose seeds are more alike than the threshold, or identical.
        identical: the masks whose seeds reach :data:`IDENTICAL_MS_SSIM`.
        collapsed: at least half of the masks have identical seeds: the sampler ignores its seed.
        reference: the real neighbour pairs' MS-SSIM.
        settings: the MS-SSIM window and weights (:func:`ms_ssim_settings`).
    """

    per_mask: dict[str, float]
    seeds: dict[str, int]
    threshold: float
    flagged: list[str]
    identical: list[str]
    collapsed: bool
    reference: np.ndarray
    settings: dict

    def to_dict(self) -> dict:
        """The figures a report needs, JSON-ready (Python numbers, lists; NaN as null)."""
        from .report_json import json_ready

        values = np.array(list(self.per_mask.values()))
        seeds = np.array(list(self.seeds.values()))
        return json_ready(
            {
                "masks": len(values),
                "seeds_per_mask": {"min": int(seeds.min()), "max": int(seeds.max())},
                "pairs": int(sum(s * (s - 1) // 2 for s in seeds)),
                "ms_ssim": {
                    "median": float(np.median(values)),
                    "mean": float(values.mean()),
                    "max": float(values.max()),
                },
                "reference": {
                    "pairs": int(self.reference.size),
                    "median": float(np.median(self.reference)),
                    "max": float(self.reference.max()),
                },
                "threshold": self.threshold,
                "threshold_rule": THRESHOLD_RULE,
                "identical_ms_ssim": IDENTICAL_MS_SSIM,
                "flagged": self.flagged,
                "flagged_fraction": len(self.flagged) / len(values),
                "identical": self.identical,
                "collapsed": self.collapsed,
                "per_mask": self.per_mask,
                "ms_ssim_settings": {
                    "kernel_size": self.settings["kernel_size"],
                    "betas": list(self.settings["betas"]),
                },
            }
        )


def diversity_summary(per_mask: Mapping[str, np.ndarray], reference) -> DiversityResult:
    """Each mask's mean pairwise MS-SSIM across seeds, flagged against the real reference.

    The threshold is the reference's **median**: a mask is flagged when its seeds are more alike than a typical pair
    of real slices 2.5 mm apart, the issue's rule. The maximum would pass nearly any sampler short of an exact copy:
    measured at 64 px on the mini data, real 2.5-mm pairs have a median of 0.989 and a maximum of 0.996, a copy with
    0.02 of noise scores 0.997, and the 64-px demo SDM's seeds score 0.958-0.985 per mask (8 held-out masks, 4 seeds,
    DPM-Solver++ 25 steps), all below the median. The median is also stable against how many pairs there are.

    Args:
        per_mask: mask id -> ``(S, H, W)`` samples of that mask for ``S >= 2`` seeds, in [0, 1], all of one size.
        reference: :func:`real_neighbour_similarity` of real slices at that size.
    """
    if not per_mask:
        raise ValueError("per_mask is empty: give each mask's samples for at least 2 seeds")
    reference = np.asarray(reference, np.float64).ravel()
    if not reference.size or not np.isfinite(reference).all():
        raise ValueError(
            "the reference needs at least one finite MS-SSIM; give real slices with neighbours 2.5 mm apart"
        )
    stacks = {
        str(key): check_slices(images, f"the samples of mask {key}", min_count=2) for key, images in per_mask.items()
    }
    shapes = {stack.shape[1:] for stack in stacks.values()}
    if len(shapes) > 1:
        raise ValueError(f"every mask's samples must have one size, got {sorted(shapes)}")
    scores = {key: mean_pairwise_ms_ssim(stack) for key, stack in stacks.items()}
    threshold = float(np.median(reference))
    identical = [key for key, score in scores.items() if score >= IDENTICAL_MS_SSIM]
    return DiversityResult(
        per_mask=scores,
        seeds={key: len(stack) for key, stack in stacks.items()},
        threshold=threshold,
        flagged=[key for key, score in scores.items() if score > threshold or key in identical],
        identical=identical,
        collapsed=len(identical) >= COLLAPSED_SHARE * len(scores),
        reference=reference,
        settings=ms_ssim_settings(*shapes.pop()),
    )


def diversity_figure(per_mask: Mapping[str, np.ndarray], path, max_masks: int = 4, scores=None) -> Path:
    """A PNG of the first ``max_masks`` masks' samples (rows) across seeds (columns), each row titled with its mean
    pairwise MS-SSIM; written atomically, marked synthetic (title and PNG text chunks).

    ``scores`` (mask id -> MS-SSIM, e.g. :attr:`DiversityResult.per_mask`) saves recomputing them.
    """
    from matplotlib.figure import Figure

    if not per_mask:
        raise ValueError("per_mask is empty: there is nothing to draw")
    if max_masks < 1:
        raise ValueError(f"max_masks must be at least 1, got {max_masks}")
    shown = list(per_mask.items())[:max_masks]
    rows = [(str(key), check_slices(images, f"the samples of mask {key}")) for key, images in shown]
    columns = max(len(stack) for _, stack in rows)
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(rows) + 0.4), dpi=100)
    figure.suptitle("Synthetic samples of one mask per row, one seed per column")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for (key, stack), row in zip(rows, axes):
        score = scores[key] if scores is not None else (mean_pairwise_ms_ssim(stack) if len(stack) > 1 else np.nan)
        for column, ax in enumerate(row):
            ax.set_axis_off()
            if column < len(stack):
                ax.imshow(stack[column], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        row[0].set_title(f"synthetic, mask {key}: MS-SSIM {score:.3f}", loc="left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", metadata=synthetic_png_text())
    return path
