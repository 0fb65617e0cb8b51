"""Real CT slices for the diversity and memorisation tests: two patients of the shared LIDC sample, through the
lungs, as 64-px window images in [0, 1] (area-averaged from 512 px, as the recipe averages to the model's size).

Read once per test process (1.5-2.5 s a scan on 2 busy cores).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from lung_support import LIDC_0003_SERIES

# LIDC-IDRI-0001, the recipe's test patient; LIDC-IDRI-0003 is in its train split. Both have 2.5-mm slices.
LIDC_0001_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
# Slices whose middle has lung in it (more than 30% of it below -500 HU).
LUNG_SLICES = {LIDC_0001_SERIES: range(60, 100), LIDC_0003_SERIES: range(50, 110)}
SIZE = 64


@functools.cache
def real_slices(shared_dir: Path, series_uid: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, z_mm)``: the scan's lung slices ``(N, 64, 64)`` float32 in [0, 1] and their z in mm."""
    from lung_diffusers.ct import image_from_hu, read_ct_volume

    volume = read_ct_volume(shared_dir / "data" / "lidc-mini" / "subset0" / f"{series_uid}.mhd")
    index = np.asarray(LUNG_SLICES[series_uid])
    images = image_from_hu(volume.hu[index])
    side = images.shape[1]
    images = images.reshape(len(index), SIZE, side // SIZE, SIZE, side // SIZE).mean(axis=(2, 4), dtype=np.float64)
    images = np.clip(images, 0.0, 1.0).astype(np.float32)
    images.flags.writeable = False  # shared by every test of the process
    return images, np.asarray(volume.slice_z_mm(index), np.float64)
