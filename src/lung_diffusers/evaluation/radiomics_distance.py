"""Fréchet Radiomics Distance (FRD) of CT slices: frd-score's v1 features and formula, fed from arrays.

FRD v1 (Konz, Osuala et al., Medical Image Analysis 2026; the ``frd-score`` package) as frd-score 1.0.x computes it
for a folder of 2-D PNGs, with no masks:

- **Features** (:func:`radiomics_features`): pyradiomics with frd's own v1 2-D extractor
  (``frd_score/configs/extraction_2d.yaml``, built by ``frd_score.frd.get_feature_extractor``): image types
  Original, LoG (sigma 2, 3, 4, 5, in PNG pixels) and Wavelet; classes firstorder, 22 GLCM features, GLRLM,
  GLSZM, NGTDM; the image z-scored by pyradiomics (``normalize``, scale 100, ``voxelArrayShift`` 300), resampled
  with B-splines to 2 x 2 px spacing (a PNG has 1-px spacing, so a 64-px slice is analysed at 32 px), bins of
  width 5. The mask is the whole slice but one corner pixel (frd's workaround for pyradiomics issue 765). The
  feature vector is every non-diagnostic feature plus the numeric ``diagnostics_*`` entries (image mean/min/max,
  mask voxel count, ...), which frd keeps to reproduce the paper: 398 values per 2-D slice (frd's "~464" counts
  3-D wavelets). The slice goes in as frd reads a PNG: grey levels 0-255 as float32, a (1, H, W) volume of 1-px
  spacing. So a [0, 1] image is first quantised to 8-bit grey levels (``round(255 x)`` in the image's own float
  precision), exactly the PNG that the data recipe or ``synthesize`` writes.
- **Distance** (:func:`radiomics_distance`): frd's v1 steps on those features: images with a NaN feature dropped,
  float32, each feature z-scored with the mean and standard deviation (``ddof=0``) of the **reference** set (the
  real images, frd's ``norm_ref='d1'``), features that then hold NaN or inf in either set dropped, the Fréchet
  distance d² of the two fitted Gaussians (frd's ``calculate_frechet_distance``), and ``FRD = log(d²)``. Lower is
  closer; the log makes it negative for close sets. Identical sets give d² = 0 up to rounding, so ``-inf`` (as
  frd-score reports it; a large negative number if rounding leaves d² positive), which we keep: the minimum.

Two values (:class:`RadiomicsDistance`):

- ``library``: the number frd-score itself reports for these images (``frd_score.compute_frd`` on the same slices
  saved as PNGs; tests/evaluation/test_radiomics_distance.py checks the two agree).
- ``guarded``: the same computation after dropping features that are (numerically) constant in the reference set:
  standard deviation below ``constant_std x max(1, |mean|)``, both over the real images in float64. frd drops a
  feature only when its reference standard deviation is exactly zero (or NaN) in float32. Some features are
  constant up to rounding instead: the mean and median of the high-pass wavelet bands are 0 in exact arithmetic,
  and over real slices their standard deviation is 1e-17 to 5e-10 (at 256 px; the next smallest feature varies by
  1e-5). z-scoring divides by that, so a synthetic set that moves them (noise does) lands 1e8 to 1e17 standard
  deviations away, and those features alone set d². The rule depends on the reference set only, so every
  synthetic set is compared on the same features.

Report both, named (``library`` is comparable with other frd-score v1 numbers; ``guarded`` is the one to rank
models by), with ``version`` and ``form``.

Cost: about 0.2 s per slice at 32-64 px and 0.5 s at 256 px on one core. Needs the ``eval`` extra
(``pyradiomics-bhklab``, ``frd-score``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from dataclasses import dataclass, field

import numpy as np

FORM = "v1, log"  # frd-score's default: FRD v1 features and normalisation, log(d²)
_EXTRA_HINT = "pip install 'lung-diffusers[eval]'"
_worker_extractor = None  # one extractor per worker process (made by _start_worker)


@dataclass(frozen=True)
class RadiomicsFeatures:
    """FRD v1 radiomics features of a set of slices: ``values`` ``(N, F)`` float64, one row per slice, and the
    feature ``names`` (frd-score's, e.g. ``wavelet-LH_firstorder_Median``)."""

    values: np.ndarray
    names: list[str]

    def __post_init__(self):
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(f"values must be (images, {len(self.names)} features), got shape {self.values.shape}")


@dataclass(frozen=True)
class RadiomicsDistance:
    """FRD of a synthetic set against a real one (see the module docstring).

    Attributes:
        library: frd-score's own value for these features (log d²; ``-inf`` for identical statistics).
        guarded: the same after dropping the reference set's near-constant features (``dropped``).
        dropped: features frd-score keeps but the guard drops.
        version: frd-score's version.
        form: the FRD form, ``"v1, log"``.
    """

    library: float
    guarded: float
    dropped: list[str] = field(default_factory=list)
    version: str = ""
    form: str = FORM


def radiomics_features(images: np.ndarray, *, num_workers: int = 1, progress: bool = True) -> RadiomicsFeatures:
    """FRD v1 radiomics features of ``(N, H, W)`` CT slices: windowed images in [0, 1] (the HU window
    [-1000, 400] mapped to 0-1) or uint8 grey levels 0-255.

    ``num_workers`` > 1 extracts in that many processes (frd-score's own default is the CPU count minus 2).

    Raises:
        ValueError: not an ``(N, H, W)`` stack, a float image outside [0, 1] or not finite, another dtype.
        ImportError: the ``eval`` extra is not installed.
    """
    grey = _grey_levels(images)
    _frd_module()
    from tqdm.auto import tqdm

    bar = dict(total=len(grey), desc="radiomics features", unit="slice", disable=not progress)
    with _one_itk_thread():
        if num_workers <= 1:
            _start_worker()
            rows = [_slice_features(image) for image in tqdm(grey, **bar)]
        else:
            with multiprocessing.get_context().Pool(num_workers, initializer=_start_pool_worker) as pool:
                rows = list(tqdm(pool.imap(_slice_features, grey, chunksize=4), **bar))
    names = list(rows[0])
    return RadiomicsFeatures(np.array([list(row.values()) for row in rows], dtype=np.float64), names)


def radiomics_distance(
    real: RadiomicsFeatures, synthetic: RadiomicsFeatures, *, constant_std: float = 1e-8
) -> RadiomicsDistance:
    """FRD v1 (log form) of ``synthetic`` against the reference ``real``: frd-score's value and the guarded one.

    A feature is near-constant, and left out of ``guarded``, when its standard deviation over the real images is
    below ``constant_std x max(1, |mean|)`` (relative for large features, absolute below 1).

    Raises:
        ValueError: the two sets hold different features, or either has fewer than 2 images without NaN features.
        ImportError: the ``eval`` extra is not installed.
    """
    if list(real.names) != list(synthetic.names):
        raise ValueError("real and synthetic features must be the same features in the same order")
    _frd_module()
    real_rows, synthetic_rows = _finite_rows(real.values, "real"), _finite_rows(synthetic.values, "synthetic")

    library, library_kept = _frd_v1(real_rows, synthetic_rows)
    std, mean = real_rows.std(axis=0), real_rows.mean(axis=0)
    varies = std >= constant_std * np.maximum(1.0, np.abs(mean))
    if not varies.any():
        raise ValueError("every radiomics feature is constant over the real images: FRD cannot compare them")
    guarded, _ = _frd_v1(real_rows[:, varies], synthetic_rows[:, varies])
    dropped = [name for name, kept, v in zip(real.names, library_kept, varies) if kept and not v]
    return RadiomicsDistance(library=library, guarded=guarded, dropped=dropped, version=_frd_version(), form=FORM)


def _frd_v1(real: np.ndarray, synthetic: np.ndarray) -> tuple[float, np.ndarray]:
    """frd-score 1.0's v1 statistics and distance (``calculate_feature_statistics`` after extraction, then
    ``compute_frd``'s log), with its own normaliser and Fréchet distance; also which features it kept."""
    from frd_score import frd

    # As frd: float32 (the paper's pandas round trip), z-scored against the reference with no guard for std 0.
    real, synthetic = real.astype(np.float32), synthetic.astype(np.float32)
    normalized = [
        frd.z_score_normalize(
            features, new_min=0.0, new_max=1.0, base_distribution=real, replace_nan=False, handle_std_zero=False
        )
        for features in (real, synthetic)
    ]
    kept = ~np.any([~np.isfinite(n).all(axis=0) for n in normalized], axis=0)
    normalized = [n[:, kept] for n in normalized]
    mu = [np.mean(n, axis=0) for n in normalized]
    sigma = [np.cov(n, rowvar=False) for n in normalized]
    d2 = frd.calculate_frechet_distance(mu[0], sigma[0], mu[1], sigma[1])
    return (float(np.log(d2)) if d2 > 0 else float("-inf")), kept


def _finite_rows(values: np.ndarray, name: str) -> np.ndarray:
    # frd v1 drops every image with a NaN feature before anything else.
    rows = np.asarray(values, np.float64)
    rows = rows[~np.isnan(rows).any(axis=1)]
    if len(rows) < 2:
        raise ValueError(f"the {name} set needs at least 2 images with all radiomics features, got {len(rows)}")
    return rows


def _grey_levels(images) -> np.ndarray:
    """``(N, H, W)`` float32 grey levels 0-255, as frd-score reads an 8-bit PNG."""
    from .slice_sets import as_window_images

    # In the images' own precision, as diffusers' numpy_to_pil and synthetic_marker write PNGs: float32 and float64
    # products round a few pixels differently.
    return (as_window_images(images) * 255).round().astype(np.float32)


def _slice_features(grey: np.ndarray) -> dict[str, float]:
    """frd-score's ``process_image_mask_pair`` for one 2-D PNG and no mask (v1), from the array."""
    import SimpleITK as sitk

    # A PNG read by SimpleITK has 1-px spacing; frd makes the slice a (1, H, W) volume with z spacing 1.
    image = sitk.GetImageFromArray(grey[np.newaxis])
    image.SetSpacing((1.0, 1.0, 1.0))
    mask_array = np.ones((1, *grey.shape), np.uint8)
    mask_array[0, 0, 0] = 0  # frd's workaround for pyradiomics issue 765, which a full mask triggers
    mask = sitk.GetImageFromArray(mask_array)
    mask.SetSpacing((1.0, 1.0, 1.0))
    output = _worker_extractor.execute(image, mask)
    features = {}
    for name, value in output.items():
        if "diagnostics" not in name:
            features[name.replace("original_", "")] = float(value)
        else:
            # frd v1 keeps the numeric diagnostics (they were in the paper's feature table) and skips the rest.
            try:
                features[name] = float(value)
            except (TypeError, ValueError):
                pass
    return features


@contextlib.contextmanager
def _one_itk_thread():
    """SimpleITK filters on one thread meanwhile: on slices this small its thread pool costs more than it saves (2.4x
    slower per slice on 2 busy cores); parallelism comes from ``num_workers`` instead. Same features either way."""
    import SimpleITK as sitk

    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _start_pool_worker() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # as _one_itk_thread, also under the spawn start method
    _start_worker()


def _start_worker() -> None:
    global _worker_extractor
    if _worker_extractor is None:
        frd = _frd_module()
        _worker_extractor = frd.get_feature_extractor(frd_version=frd.FRD_VERSION_V1, image_dim=2)


def _frd_module():
    """``frd_score.frd`` with pyradiomics loaded and quiet (as ``compute_frd`` sets it when not verbose)."""
    try:
        from frd_score import frd

        frd._ensure_radiomics()
    except ImportError as error:
        raise ImportError(f"the Fréchet Radiomics Distance needs frd-score and pyradiomics: {_EXTRA_HINT}") from error
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    frd.setVerbosity(60)
    return frd


def _frd_version() -> str:
    import frd_score

    return frd_score.__version__
