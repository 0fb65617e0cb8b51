"""The models behind the Space: loaded once per process, shared by every request.

Weights are loaded once (:func:`get_service`). Each request gets its own light pipeline object around the shared
U-Net, with a fresh scheduler: schedulers keep per-call state (``set_timesteps``, step counters), so two users
sharing one would corrupt each other's sampling when the queue runs jobs side by side.

Where the models come from (first match):

* ``LUNG_SPACE_PIPELINE`` / ``LUNG_SPACE_PRIOR``: a pipeline folder or a Hub repo id;
* ``pipelines/lung-sdm-64`` and ``pipelines/lung-ddpm-prior-64`` beside the app (the bundle built by
  ``make space-bundle``) or in the repository root (``make space``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from lung_diffusers import (
    LungRePaintPipeline,
    LungSDMPipeline,
    load_pipeline,
    save_synthetic_nifti,
    save_synthetic_png,
)
from lung_diffusers.ct import label_scheme, window_hu
from lung_diffusers.evaluation.fidelity import lung_dice
from lung_diffusers.inpainting import insert_nodule, remove_nodule
from lung_diffusers.pipelines.pipeline_lung_repaint import REPAINT_PRESETS
from lung_diffusers.scheduler_registry import get_entry

APP_DIR = Path(__file__).resolve().parents[1]
PIPELINE_ENV, PRIOR_ENV = "LUNG_SPACE_PIPELINE", "LUNG_SPACE_PRIOR"
SDM_FOLDER, PRIOR_FOLDER = "lung-sdm-64", "lung-ddpm-prior-64"

# The samplers the Space offers (a subset of the package's registry, which also gives their display names).
# DDPM keeps the checkpoint's learned variance; the others get the noise half alone. Heun spends two U-Net passes
# per step.
SPACE_SCHEDULERS = ("dpm", "unipc", "ddim", "euler", "euler-ancestral", "heun", "ddpm")
SCHEDULERS = {get_entry(name).display_name: get_entry(name).class_name for name in SPACE_SCHEDULERS}
# RePaint settings offered in the UI: "quick" is this Space's own (a few seconds at 64 px on a CPU core);
# "cpu" and "paper" are the package's presets.
REPAINT_SETTINGS = {
    "quick": {"num_inference_steps": 20, "jump_length": 5, "jump_n_sample": 2},
    "cpu": REPAINT_PRESETS["cpu"],
    "paper": REPAINT_PRESETS["paper"],
}

# Bounds on what one request may ask for, so one user cannot hold the queue (or the memory) for long.
MAX_IMAGES = 4
MAX_COMPARE_RUNS = 12
MAX_COMPARE_STEPS = 1500  # summed over the runs of one comparison
MAX_GUIDANCE = 10.0
MAX_SEED = 2**32 - 1
MAX_EDIT_SAMPLES = 4
# Download folders older than this are deleted when a new one is made (the disk stays bounded).
OUTPUT_MAX_AGE_S = 3600

ProgressFactory = Callable[[str], Callable] | None


@dataclass
class Synthesis:
    """Images of one sampling run: ``grey`` uint8 ``(N, H, W)`` in the lung window, ``hu`` float32 ``(N, H, W)``."""

    grey: np.ndarray
    hu: np.ndarray
    seconds: float
    scheduler: str
    steps: int
    seeds: list[int]


@dataclass
class Comparison:
    scheduler: str
    steps: int
    seconds: float
    dice: float
    grey: np.ndarray


def find_pipeline(env: str, folder: str) -> str:
    """The pipeline to load: ``$env`` if set, else the bundled folder (beside the app, or in the repository)."""
    if os.environ.get(env):
        return os.environ[env]
    for root in (APP_DIR / "pipelines", APP_DIR.parent / "pipelines"):
        if (root / folder / "model_index.json").is_file():
            return str(root / folder)
    raise FileNotFoundError(
        f"no {folder} pipeline: set {env} to a pipeline folder or Hub repo id, or run from the repository "
        f"(pipelines/{folder}) or from a bundle made by `make space-bundle`"
    )


def check_int(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a ValueError that says the allowed range."""
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    if not math.isfinite(value) or float(value) != int(value) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def check_float(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    if not math.isfinite(value) or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def make_scheduler(name: str, config):
    """A fresh scheduler of the named kind (a display name), on the checkpoint's noise schedule."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return get_entry(name).from_config(config)


_cleanup_lock = threading.Lock()


def fresh_output_dir() -> Path:
    """A new folder for one request's downloads; folders of earlier requests older than an hour are removed."""
    root = Path(tempfile.gettempdir()) / "lung-space-outputs"
    root.mkdir(exist_ok=True)
    remove_old_output_dirs(root, OUTPUT_MAX_AGE_S)
    return Path(tempfile.mkdtemp(dir=root))


def remove_old_output_dirs(root: Path, max_age_s: float) -> None:
    """Delete the entries of ``root`` older than ``max_age_s``; never fails a request.

    One thread cleans at a time (the others skip: it is the same work). Another process (a second worker on the
    same /tmp) may still remove an entry between listing and removal, so a vanished entry is simply skipped.
    """
    if not _cleanup_lock.acquire(blocking=False):
        return
    try:
        now = time.time()
        with os.scandir(root) as entries:
            for entry in entries:
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime <= max_age_s:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)  # its files too may vanish meanwhile
                    else:
                        os.unlink(entry.path)
                except OSError:  # removed meanwhile, or not ours to remove: either way not this request's failure
                    continue
    finally:
        _cleanup_lock.release()


class ModelService:
    """The SDM (synthesis, comparison, nodule insertion) and the healthy prior (nodule removal)."""

    def __init__(self, sdm_source: str, prior_source: str | None):
        self.sdm_source, self.prior_source = sdm_source, prior_source
        self.sdm = load_pipeline(sdm_source, device=None, pipeline_class=LungSDMPipeline, flag=PIPELINE_ENV)
        self.sdm.unet.eval()
        self.prior = None
        if prior_source:
            self.prior = load_pipeline(prior_source, device=None, pipeline_class=LungRePaintPipeline, flag=PRIOR_ENV)
        if self.prior is not None:
            self.prior.unet.eval()
        self.num_classes = int(self.sdm.unet.config.num_classes)
        self.size = int(self.sdm.unet.config.sample_size)
        self.examples = load_examples(sdm_source)
        self.warm_up()

    def warm_up(self) -> None:
        """One tiny pass through each U-Net: PyTorch's first call is slow (kernel selection, allocations), and it
        would otherwise land in the first user's wall time (and skew the first run of a comparison)."""
        with torch.no_grad():
            blank = np.zeros((self.size, self.size), np.uint8)
            self.sdm_pipeline("DDIM")(blank, num_inference_steps=1, output_type="np")
            if self.prior is not None:
                side = int(self.prior.unet.config.sample_size)
                self.prior.unet(torch.zeros(1, self.prior.unet.config.in_channels, side, side), 999)

    # ------------------------------------------------------------------ per-request pipelines

    def _attach_progress(self, pipe, progress: ProgressFactory, desc: str):
        if progress is None:
            pipe.set_progress_bar_config(disable=True)
        else:
            tracker = progress(desc)
            # diffusers pipelines draw their bar through `self.progress_bar(iterable)`: point it at the UI's bar.
            pipe.progress_bar = lambda iterable=None, total=None: tracker(iterable)
        return pipe

    def sdm_pipeline(self, scheduler: str, progress: ProgressFactory = None, desc: str = "sampling"):
        pipe = LungSDMPipeline(
            unet=self.sdm.unet,
            scheduler=make_scheduler(scheduler, self.sdm.scheduler.config),
            hu_window=self.sdm.config.hu_window,
        )
        return self._attach_progress(pipe, progress, desc)

    def repaint_pipeline(self, healthy_prior: bool, progress: ProgressFactory = None, desc: str = "inpainting"):
        source = self.prior if healthy_prior else self.sdm
        if source is None:
            raise ValueError("this Space has no healthy prior loaded, so it cannot remove nodules")
        pipe = LungRePaintPipeline(
            unet=source.unet,
            scheduler=type(source.scheduler).from_config(source.scheduler.config),
            hu_window=source.config.hu_window,
        )
        return self._attach_progress(pipe, progress, desc)

    # ------------------------------------------------------------------ jobs

    def check_labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (self.size, self.size):
            raise ValueError(
                f"the label map is {labels.shape[1]}x{labels.shape[0]}, the model needs {self.size}x{self.size}"
            )
        if labels.size and int(labels.max()) >= self.num_classes:
            raise ValueError(
                f"the label map holds class {int(labels.max())}; this model knows 0-{self.num_classes - 1}"
            )
        return labels.astype(np.uint8)

    def synthesise(
        self,
        labels: np.ndarray,
        scheduler: str,
        steps,
        guidance,
        seed,
        num_images,
        progress: ProgressFactory = None,
    ) -> Synthesis:
        """``num_images`` slices for one label map; image ``k`` uses seed ``seed + k``."""
        labels = self.check_labels(labels)
        max_steps = int(self.sdm.scheduler.config.num_train_timesteps)
        steps = check_int("steps", steps, 1, max_steps)
        guidance = check_float("guidance scale", guidance, 0.0, MAX_GUIDANCE)
        seed = check_int("seed", seed, 0, MAX_SEED - MAX_IMAGES)
        num_images = check_int("number of images", num_images, 1, MAX_IMAGES)
        pipe = self.sdm_pipeline(scheduler, progress, f"{scheduler}, {steps} steps")
        seeds = [seed + k for k in range(num_images)]
        started = time.perf_counter()
        hu = pipe(
            labels,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator().manual_seed(s) for s in seeds],
            num_images_per_prompt=num_images,
            output_type="hu",
        ).images
        seconds = time.perf_counter() - started
        return Synthesis(window_hu(hu, tuple(pipe.config.hu_window)), hu, seconds, scheduler, steps, seeds)

    def compare(
        self,
        labels: np.ndarray,
        schedulers: Sequence[str],
        step_counts: Sequence[int],
        seed,
        guidance,
        progress: ProgressFactory = None,
    ) -> list[Comparison]:
        """Every scheduler x step count on the same mask and seed, with wall time and lung Dice against the mask."""
        schedulers = list(dict.fromkeys(schedulers or []))
        step_counts = list(dict.fromkeys(step_counts or []))
        if not schedulers:
            raise ValueError("tick at least one scheduler to compare")
        if not step_counts:
            raise ValueError("give at least one step count, e.g. 10, 25")
        runs = [(s, n) for s in schedulers for n in step_counts]
        if len(runs) > MAX_COMPARE_RUNS:
            raise ValueError(f"{len(runs)} runs asked for; compare at most {MAX_COMPARE_RUNS} at a time")
        total = sum(n for _, n in runs)
        if total > MAX_COMPARE_STEPS:
            raise ValueError(f"{total} denoising steps in all; keep a comparison under {MAX_COMPARE_STEPS}")
        results = []
        for scheduler, steps in runs:
            synthesis = self.synthesise(labels, scheduler, steps, guidance, seed, 1, progress)
            results.append(
                Comparison(scheduler, steps, synthesis.seconds, lung_dice(synthesis.hu[0], labels), synthesis.grey[0])
            )
        return results

    def remove_nodule(self, image: np.ndarray, nodule: np.ndarray, settings: str, seed, samples, progress=None):
        """The healthy counterfactual of a real 256-px slice (RePaint with the healthy prior)."""
        repaint = self._repaint_settings(settings)
        pipe = self.repaint_pipeline(True, progress, "removing the nodule")
        return remove_nodule(
            pipe,
            image,
            nodule,
            num_samples=check_int("samples", samples, 1, MAX_EDIT_SAMPLES),
            generator=check_int("seed", seed, 0, MAX_SEED),
            **repaint,
        )

    def insert_nodule(
        self, image: np.ndarray, labels: np.ndarray, nodule: np.ndarray, settings: str, seed, malignancy, progress=None
    ):
        """A nodule put into a real slice by the SDM (RePaint), at the SDM's size."""
        repaint = self._repaint_settings(settings)
        pipe = self.repaint_pipeline(False, progress, "inserting the nodule")
        return insert_nodule(
            pipe,
            image,
            labels,
            nodule,
            malignancy=malignancy if label_scheme(self.num_classes).tells_malignancy else None,
            generator=check_int("seed", seed, 0, MAX_SEED),
            **repaint,
        )

    @staticmethod
    def _repaint_settings(name: str) -> dict:
        if name not in REPAINT_SETTINGS:
            raise ValueError(f"unknown RePaint setting {name!r}; choose one of {', '.join(REPAINT_SETTINGS)}")
        return dict(REPAINT_SETTINGS[name])


def write_synthesis(synthesis: Synthesis, pixel_mm: float, source: str) -> list[Path]:
    """PNG and NIfTI per image, both marked synthetic (PNG text chunk, NIfTI ``descrip``)."""
    folder = fresh_output_dir()
    written = []
    name = synthesis.scheduler.lower().replace(" ", "-").replace("+", "p")
    for grey, hu, seed in zip(synthesis.grey, synthesis.hu, synthesis.seeds):
        stem = folder / f"synthetic_{name}_{synthesis.steps}steps_seed{seed}"
        metadata = {
            "seed": str(seed),
            "scheduler": synthesis.scheduler,
            "steps": str(synthesis.steps),
            "pipeline": source,
        }
        written.append(save_synthetic_png(grey, stem.with_suffix(".png"), metadata))
        written.append(save_synthetic_nifti(hu, f"{stem}.nii.gz", spacing=(pixel_mm, pixel_mm)))
    return written


def load_examples(sdm_source: str) -> dict[str, tuple[np.ndarray, float]]:
    """The pipeline's example masks: name -> (label map, pixel spacing in mm). Empty when it ships none."""
    import PIL.Image

    folder = Path(sdm_source) / "example_masks"
    if not folder.is_dir() and not Path(sdm_source).exists():
        try:  # a Hub repo id: fetch only the examples
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(sdm_source, allow_patterns=["example_masks/*"])) / "example_masks"
        except Exception:  # offline or no examples: the blank mask remains
            return {}
    if not folder.is_dir():
        return {}
    facts = json.loads((folder / "examples.json").read_text()) if (folder / "examples.json").is_file() else {}
    examples = {}
    for path in sorted(folder.glob("*.png")):
        with PIL.Image.open(path) as image:
            labels = np.asarray(image).astype(np.uint8)
        pixel_mm = facts.get(path.name, {}).get("pixel_mm")
        examples[path.stem] = (labels, float(pixel_mm[0]) if pixel_mm else None)
    return examples


_load_lock = threading.Lock()


@cache
def _service() -> ModelService:
    try:
        prior = find_pipeline(PRIOR_ENV, PRIOR_FOLDER)
    except FileNotFoundError:
        prior = None  # the Synthesise and Compare tabs still work; removal says why it cannot
    return ModelService(find_pipeline(PIPELINE_ENV, SDM_FOLDER), prior)


def get_service() -> ModelService:
    """The process's one :class:`ModelService` (loaded on first call)."""
    with _load_lock:  # two first requests at once must not load twice
        return _service()
