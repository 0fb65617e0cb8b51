"""The CT intensity window and the four scales a slice is seen in, with one conversion between each pair used.

- **HU**: Hounsfield units, float32 (or int16 volumes as read).
- **grey**: uint8 0-255, the data recipe's lung-window PNGs (thesis section 3.2.1).
- **window image**: float32 in [0, 1], the grey levels divided by 255 (what the inpainting helpers take).
- **model range**: [-1, 1], what the models are trained on and the pipelines sample in.

With the default window [-1000, 400] HU, -1000 HU is grey 0, window 0 and model -1; 400 HU is 255, 1 and +1.
Values outside the window are clipped on the way in, so a round trip gives back the window's bound for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The thesis' CT window: keeps lung parenchyma, vessels and soft tissue apart while mapping air to 0.
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)


def check_hu_window(hu_window: Sequence[float], name: str = "hu_window") -> tuple[float, float]:
    """``(lower, upper)`` as floats, or a `ValueError` naming ``name`` when they are not a finite increasing pair."""
    try:
        lower, upper = (float(v) for v in hu_window)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two values (lower, upper) in HU, got {hu_window!r}") from None
    if not (math.isfinite(lower) and math.isfinite(upper) and upper > lower):
        raise ValueError(f"{name} must be two finite values (lower, upper) in HU with upper > lower, got {hu_window}")
    return lower, upper


def window_hu(hu: np.ndarray, window_hu: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """HU -> grey: ``window_hu[0]`` and below to 0, ``window_hu[1]`` and above to 255, linear between.

    ``value = round((clip(hu, lo, hi) - lo) / (hi - lo) * 255)``. With the default lung window, -1000 HU is 0 and
    400 HU is 255 (about 5.49 HU per grey level).
    """
    lower, upper = check_hu_window(window_hu, "window_hu")
    scaled = (np.clip(hu, lower, upper).astype(np.float32) - lower) * (255.0 / (upper - lower))
    return np.rint(scaled).astype(np.uint8)


def unwindow_hu(windowed: np.ndarray, window_hu: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """Grey levels (0-255, e.g. a generated image) -> HU, float32: ``lo + value / 255 * (hi - lo)``.

    The inverse of :func:`window_hu` within the window: a round trip is exact to half a grey level (about 2.7 HU for
    the lung window); values that were clipped come back as ``lo`` or ``hi``.
    """
    lower, upper = check_hu_window(window_hu, "window_hu")
    return (np.asarray(windowed, np.float32) * np.float32((upper - lower) / 255.0) + np.float32(lower)).astype(
        np.float32
    )


def image_from_hu(hu: np.ndarray, hu_window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """HU -> window image, float32 in [0, 1] (values outside the window are clipped)."""
    low, high = check_hu_window(hu_window)
    return np.clip((np.asarray(hu, np.float32) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def hu_from_image(image: np.ndarray, hu_window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """Window image in [0, 1] -> HU, float32."""
    low, high = check_hu_window(hu_window)
    return (low + np.asarray(image, np.float32) * (high - low)).astype(np.float32)


def model_range_from_image(image):
    """Window image in [0, 1] -> model range [-1, 1]; a NumPy array or torch tensor keeps its type."""
    return _as_float_array(image) * 2 - 1


def image_from_model_range(sample):
    """Model range [-1, 1] -> window image in [0, 1], clipped (samples overshoot a little); keeps the array type."""
    return (_as_float_array(sample) / 2 + 0.5).clip(0, 1)


def model_range_from_grey(grey):
    """Grey levels 0-255 -> model range [-1, 1] (``grey / 127.5 - 1``), float32; keeps the array type."""
    grey = _as_float_array(grey)
    return (grey.astype(np.float32, copy=False) if isinstance(grey, np.ndarray) else grey.float()) / 127.5 - 1.0


def hu_from_model_range(sample, hu_window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """Model range [-1, 1] -> HU, float32 NumPy (not clipped: the window's bounds are -1 and +1)."""
    low, high = check_hu_window(hu_window)
    sample = _as_float_array(sample)
    if not isinstance(sample, np.ndarray):
        sample = sample.detach().float().cpu().numpy()
    return (low + (sample.astype(np.float32, copy=False) + 1.0) / 2.0 * (high - low)).astype(np.float32)


def model_range_from_hu(hu: np.ndarray, hu_window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """HU -> model range [-1, 1], float32 NumPy (values outside the window are clipped)."""
    return model_range_from_image(image_from_hu(hu, hu_window))


def _as_float_array(values):
    """A float NumPy array, or a float torch tensor as is (duck-typed, so this module never imports torch)."""
    if isinstance(values, np.ndarray) or not hasattr(values, "is_floating_point"):
        values = np.asarray(values)
        return values if values.dtype.kind == "f" else values.astype(np.float32)
    return values if values.is_floating_point() else values.float()
