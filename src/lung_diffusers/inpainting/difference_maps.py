"""Difference maps between a real slice and a synthetic counterfactual (thesis section 4.2.2, Listing 6).

RePaint leaves the known region *visually* the same, but its pixel values drift a little, so the raw difference
shows noise everywhere. The thesis clips each image to its own 5 % and 95 % quantiles before subtracting; what
remains is the lesion. The same functions serve any pair "with lesion" / "without lesion": a healthy
counterfactual from inpainting, a slice with an inserted nodule, or a reconstruction from a partly noised image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Listing 6's quantiles.
THESIS_QUANTILES = (0.05, 0.95)


def quantile_clip(image: np.ndarray, quantiles: Sequence[float] = THESIS_QUANTILES) -> np.ndarray:
    """Clip an image to its own ``(low, high)`` quantiles (Listing 6)."""
    image = np.asarray(image, np.float32)
    low, high = (float(q) for q in quantiles)
    if not 0 <= low < high <= 1:
        raise ValueError(f"quantiles must be (low, high) with 0 <= low < high <= 1, got {quantiles}")
    q_low, q_high = np.quantile(image, [low, high])
    return np.clip(image, q_low, q_high)


def difference_map(
    with_lesion: np.ndarray, without_lesion: np.ndarray, quantiles: Sequence[float] | None = THESIS_QUANTILES
) -> np.ndarray:
    """``clip(with_lesion) - clip(without_lesion)``, each clipped to its own quantiles: a bright lesion is positive.

    Args:
        with_lesion: ``(H, W)`` image holding the lesion (the real slice for removal, the result for insertion).
        without_lesion: ``(H, W)`` image without it, in the same units.
        quantiles: ``(low, high)``, or `None` for the raw difference.
    """
    a, b = np.asarray(with_lesion, np.float32), np.asarray(without_lesion, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"the two images must have one shape, got {a.shape} and {b.shape}")
    if quantiles is not None:
        a, b = quantile_clip(a, quantiles), quantile_clip(b, quantiles)
    return (a - b).astype(np.float32)


def mean_and_uncertainty(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sample difference maps ``(N, H, W)`` -> their mean and per-pixel standard deviation (the uncertainty
    map of several counterfactual samples; `None` for one sample)."""
    differences = np.asarray(differences, np.float32)
    if differences.ndim == 2:
        differences = differences[None]
    if differences.ndim != 3 or not len(differences):
        raise ValueError(f"expected difference maps (N, H, W), got shape {differences.shape}")
    uncertainty = differences.std(axis=0).astype(np.float32) if len(differences) > 1 else None
    return differences.mean(axis=0).astype(np.float32), uncertainty
