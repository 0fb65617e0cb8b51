"""The models behind the Space: loaded once per process, shared by every request.

Weights are loaded once (:func:`get_service`). Each request gets its own light pipeline object around the shared
U-Net, with a fresh scheduler: schedulers keep per-call state (``set_timesteps``, step counters), so two users
sharing one would corrupt each other's sampling when the queue runs jobs side by side.

Where the models come from (first match):

* ``LUNG_SPACE_PIPELINE`` / ``LUNG_SPACE_PRIOR`` / ``LUNG_SPACE_UPSCALER``: a pipeline folder or a Hub repo id;
* ``pipelines/lung-sdm-64``, ``pipelines/lung-ddpm-prior-64`` and ``pipelines/lung-sdm-upscaler-256`` beside the
  app (the bundle built by ``make space-bundle``) or in the repository root (``make space``).

With the cascade's second stage (the upscaler) present, synthesis also draws full-resolution (256-px) slices
through both stages. Warm-up times both stages once, so the Space can show what a request will take and keep a
256-px request within :data:`REQUEST_BUDGET_S`.
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
    LungSDMCombinedPipeline,
    LungSDMPipeline,
    LungSDMUpscalePipeline,
    load_pipeline,
    save_synthetic_nifti,
    save_synthetic_png,
)
from lung_diffusers.ct import label_scheme, window_hu
from lung_diffusers.evaluation.fidelity import lung_dice
from lung_diffusers.inpainting import insert_nodule, remove_nodule
from lung_diffusers.pipelines.pipeline_lung_repaint import REPAINT_PRESETS
from lung_diffusers.pipelines.pipeline_lung_sdm_upscale import DEFAULT_STRENGTH
from lung_diffusers.scheduler_registry import default_sampling, get_entry

APP_DIR = Path(__file__).resolve().parents[1]
PIPELINE_ENV, PRIOR_ENV, UPSCALER_ENV = "LUNG_SPACE_PIPELINE", "LUNG_SPACE_PRIOR", "LUNG_SPACE_UPSCALER"
SDM_FOLDER, PRIOR_FOLDER, UPSCALER_FOLDER = "lung-sdm-64", "lung-ddpm-prior-64", "lung-sdm-upscaler-256"

# The samplers the Space offers (a subset of the package's registry, which also gives their display names).
# DDPM keeps the checkpoint's learned variance; the others get the noise half alone. Heun spends two U-Net passes
# per step.
SPACE_SCHEDULERS = ("dpm", "unipc", "ddim", "euler", "euler-ancestral", "heun", "ddpm")
SCHEDULERS = {get_entry(name).display_name: get_entry(name).class_name for name in SPACE_SCHEDULERS}


def default_controls(cascade: bool = False) -> tuple[str, int]:
    """What the Scheduler and Steps controls start at: the package's default (the sampler study's at the first
    stage's size; through both stages, the cascade's measured one), by display name."""
    name, steps = default_sampling(cascade)
    return get_entry(name).display_name, steps


DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS = default_controls()
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
# Full-resolution synthesis: one request (all its images, both stages) should end within about this long on the
# Space's CPU (2 cores on the free tier), estimated from the warm-up's timing. Stage 2 takes at most
# MAX_UPSCALER_STEPS (the issue's evaluation setting: at most 25), and stage 1's steps are then limited by time.
REQUEST_BUDGET_S = 120.0
MAX_UPSCALER_STEPS = 25
DEFAULT_UPSCALER_STEPS = 20
MAX_SLIDER_STEPS = 250  # the Steps slider's range at the first stage's size
# Download folders older than this are deleted when a new one is made (the disk stays bounded).
OUTPUT_MAX_AGE_S = 3600

ProgressFactory = Callable[[str], Callable] | None


@dataclass
class Synthesis:
    """Images of one sampling run: ``grey`` uint8 ``(N, H, W)`` in the lung window, ``hu`` float32 ``(N, H, W)``;
    ``upscaler_steps`` and ``upscaler_strength`` are set when they came through both stages of the cascade."""

    grey: np.ndarray
    hu: np.ndarray
    seconds: float
    scheduler: str
    steps: int
    seeds: list[int]
    upscaler_steps: int | None = None
    upscaler_strength: float | None = None


@dataclass(frozen=True)
class StageTiming:
    """What one stage's call costs on this machine at batch 1: ``fixed`` seconds (label-map encoding, output)
    plus ``per_pass`` seconds per U-Net pass."""

    fixed: float
    per_pass: float

    def seconds(self, passes: int, batch: int) -> float:
        # CPU convolutions cost about linearly in the batch; the fixed part is counted per image too (an upper bound).
        return batch * (self.fixed + passes * self.per_pass)

    @classmethod
    def measure(cls, run: Callable[[int], object]) -> StageTiming:
        """Time ``run(steps)`` (a DDIM call: one U-Net pass per step) with 1 and with 3 steps."""
        started = time.perf_counter()
        run(1)
        one = time.perf_counter() - started
        started = time.perf_counter()
        run(3)
        three = time.perf_counter() - started
        # A floor of half the mean pass keeps timing noise (another job on the cores) from a zero slope.
        per_pass = max((three - one) / 2, three / 6)
        return cls(max(one - per_pass, 0.0), per_pass)


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
    """The SDM (synthesis, comparison, nodule insertion), the healthy prior (nodule removal) and, when there is
    one, the cascade's second stage (full-resolution synthesis)."""

    def __init__(self, sdm_source: str, prior_source: str | None, upscaler_source: str | None = None):
        self.sdm_source, self.prior_source, self.upscaler_source = sdm_source, prior_source, upscaler_source
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
        self.upscaler = None
        self.sizes = (self.size,)
        if upscaler_source:
            self.upscaler = load_upscaler(upscaler_source, self.sdm)
            full = int(self.upscaler.unet.config.sample_size)
            self.sizes = (self.size, full)
            self.examples.update({f"{name} ({full} px)": ex for name, ex in load_examples(upscaler_source).items()})
        self.timing: dict[int, StageTiming] = {}
        self.warm_up()

    @property
    def full_size(self) -> int:
        """The side of the largest images the Space draws (the upscaler's, or the SDM's without one)."""
        return self.sizes[-1]

    def warm_up(self) -> None:
        """One tiny pass through each U-Net: PyTorch's first call is slow (kernel selection, allocations), and it
        would otherwise land in the first user's wall time (and skew the first run of a comparison). Then each
        synthesis stage is timed (:attr:`timing`), for the expected times and the 256-px step limits."""
        with torch.no_grad():
            blank = np.zeros((self.size, self.size), np.uint8)

            def first_stage(steps: int):
                return self.sdm_pipeline("DDIM")(blank, num_inference_steps=steps, output_type="np")

            first_stage(1)
            self.timing[self.size] = StageTiming.measure(first_stage)
            if self.upscaler is not None:
                full = np.zeros((self.full_size, self.full_size), np.uint8)
                low_res = torch.zeros(1, 1, self.size, self.size)

                def second_stage(steps: int):
                    pipe = self.upscale_pipeline("DDIM")
                    # The whole chain, so that each step is one pass (at the default strength 1 and 3 steps
                    # both run one).
                    return pipe(low_res, full, num_inference_steps=steps, strength=1.0, output_type="np")

                second_stage(1)
                self.timing[self.full_size] = StageTiming.measure(second_stage)
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

    def upscale_pipeline(self, scheduler: str):
        """The second stage alone, with its own fresh scheduler (for timing)."""
        if self.upscaler is None:
            raise ValueError(f"this Space has no cascade second stage loaded: it draws {self.size}-px slices only")
        pipe = LungSDMUpscalePipeline(
            unet=self.upscaler.unet,
            scheduler=make_scheduler(scheduler, self.upscaler.scheduler.config),
            image_noising_scheduler=self.upscaler.image_noising_scheduler,
            hu_window=self.upscaler.config.hu_window,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def cascade_pipeline(self, scheduler: str, progress: ProgressFactory = None, steps: tuple[int, int] = (0, 0)):
        """Both stages around the shared U-Nets, each with its own fresh scheduler of the named kind."""
        if self.upscaler is None:
            raise ValueError(f"this Space has no cascade second stage loaded: it draws {self.size}-px slices only")
        pipe = LungSDMCombinedPipeline(
            unet=self.sdm.unet,
            scheduler=make_scheduler(scheduler, self.sdm.scheduler.config),
            upscaler_unet=self.upscaler.unet,
            upscaler_scheduler=make_scheduler(scheduler, self.upscaler.scheduler.config),
            # It only adds noise (no per-call state), so requests can share it.
            image_noising_scheduler=self.upscaler.image_noising_scheduler,
            hu_window=self.sdm.config.hu_window,
        )
        pipe.set_progress_bar_config(disable=True)
        if progress is not None:
            for stage, side, count in ((pipe.base, self.size, steps[0]), (pipe.upscaler, self.full_size, steps[1])):
                self._attach_progress(stage, progress, f"{side} px: {scheduler}, {count} steps")
        return pipe

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
        """The label map as uint8, at one of the sizes the Space draws (the SDM's, or the upscaler's)."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[0] != labels.shape[1] or labels.shape[0] not in self.sizes:
            needed = " or ".join(f"{side}x{side}" for side in self.sizes)
            found = "x".join(str(n) for n in labels.shape[::-1])
            raise ValueError(f"the label map is {found}, the model needs {needed}")
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
        upscaler_steps=None,
    ) -> Synthesis:
        """``num_images`` slices for one label map; image ``k`` uses seed ``seed + k``.

        A label map at the upscaler's size is drawn through both stages (``steps`` for the first,
        ``upscaler_steps`` for the second, default :data:`DEFAULT_UPSCALER_STEPS`, of which it runs the last
        ``DEFAULT_STRENGTH`` share from stage 1's image upsampled and noised), within the time budget.
        """
        labels = self.check_labels(labels)
        max_steps = int(self.sdm.scheduler.config.num_train_timesteps)
        steps = check_int("steps", steps, 1, max_steps)
        guidance = check_float("guidance scale", guidance, 0.0, MAX_GUIDANCE)
        seed = check_int("seed", seed, 0, MAX_SEED - MAX_IMAGES)
        num_images = check_int("number of images", num_images, 1, MAX_IMAGES)
        seeds = [seed + k for k in range(num_images)]
        call = dict(
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator().manual_seed(s) for s in seeds],
            num_images_per_prompt=num_images,
            output_type="hu",
        )
        if labels.shape[0] == self.size:
            pipe = self.sdm_pipeline(scheduler, progress, f"{scheduler}, {steps} steps")
            upscaler_steps = None
        else:
            upscaler_steps = DEFAULT_UPSCALER_STEPS if upscaler_steps is None else upscaler_steps
            upscaler_steps = check_int("stage-2 steps", upscaler_steps, 1, MAX_UPSCALER_STEPS)
            self.check_budget(labels.shape[0], scheduler, steps, guidance, num_images, upscaler_steps)
            pipe = self.cascade_pipeline(scheduler, progress, (steps, upscaler_steps))
            call.update(
                upscaler_num_inference_steps=upscaler_steps,
                upscaler_guidance_scale=guidance,
                upscaler_strength=DEFAULT_STRENGTH,
            )
        started = time.perf_counter()
        hu = pipe(labels, **call).images
        seconds = time.perf_counter() - started
        grey = window_hu(hu, tuple(pipe.config.hu_window))
        strength = None if upscaler_steps is None else DEFAULT_STRENGTH
        return Synthesis(grey, hu, seconds, scheduler, steps, seeds, upscaler_steps, strength)

    # ------------------------------------------------------------------ time

    def expected_seconds(self, size: int, scheduler: str, steps: int, guidance: float, num_images: int, upscaler_steps=None) -> float:
        """The expected wall time of one synthesis request on this machine, from the warm-up's timing.

        Counts the U-Net passes the sampler really makes (Heun: two per step but the last; stage 2 only its last
        ``DEFAULT_STRENGTH`` share of steps), twice for guidance.
        """
        batch = num_images * (1 if float(guidance) == 1.0 else 2)
        passes = model_passes(scheduler, int(steps), self.sdm.scheduler.config)
        seconds = self.timing[self.size].seconds(passes, batch)
        if size != self.size:
            stage_two = DEFAULT_UPSCALER_STEPS if upscaler_steps is None else int(upscaler_steps)
            passes = model_passes(scheduler, stage_two, self.upscaler.scheduler.config, DEFAULT_STRENGTH)
            seconds += self.timing[size].seconds(passes, batch)
        return seconds

    def max_steps(self, size: int, scheduler: str, guidance: float, num_images: int, upscaler_steps=None) -> int:
        """The most first-stage steps (up to :data:`MAX_SLIDER_STEPS`) a request at ``size`` may take within
        :data:`REQUEST_BUDGET_S`; 0 when even one step is over. The SDM's own size has no time limit."""
        if size == self.size:
            return MAX_SLIDER_STEPS

        def fits(steps: int) -> bool:
            seconds = self.expected_seconds(size, scheduler, steps, guidance, num_images, upscaler_steps)
            return seconds <= REQUEST_BUDGET_S

        low, high = 0, MAX_SLIDER_STEPS  # passes grow with steps: bisect for the last that fits
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        return low

    def check_budget(self, size: int, scheduler: str, steps: int, guidance: float, num_images: int, upscaler_steps: int):
        """Refuse a full-resolution request expected to take longer than :data:`REQUEST_BUDGET_S`."""
        seconds = self.expected_seconds(size, scheduler, steps, guidance, num_images, upscaler_steps)
        if seconds <= REQUEST_BUDGET_S:
            return
        most = self.max_steps(size, scheduler, guidance, num_images, upscaler_steps)
        advice = (
            f"use at most {most} steps" if most else "ask for fewer images or stage-2 steps"
        ) + (f" ({scheduler}, {num_images} image(s), {upscaler_steps} stage-2 steps)")
        raise ValueError(
            f"this {size}-px request would take about {seconds:.0f} s here; one request may take about "
            f"{REQUEST_BUDGET_S:.0f} s: {advice}"
        )

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


def write_synthesis(synthesis: Synthesis, pixel_mm: float, source: str, upscaler: str | None = None) -> list[Path]:
    """PNG and NIfTI per image, both marked synthetic (PNG text chunk, NIfTI ``descrip``); ``pixel_mm`` is the
    images' own spacing (a quarter of the 64-px one for 256-px images)."""
    folder = fresh_output_dir()
    written = []
    name = synthesis.scheduler.lower().replace(" ", "-").replace("+", "p")
    steps = f"{synthesis.steps}steps"
    if synthesis.upscaler_steps is not None:
        name = f"{synthesis.grey.shape[-1]}px_{name}"
        steps = f"{synthesis.steps}+{synthesis.upscaler_steps}steps"
    for grey, hu, seed in zip(synthesis.grey, synthesis.hu, synthesis.seeds):
        stem = folder / f"synthetic_{name}_{steps}_seed{seed}"
        metadata = {
            "seed": str(seed),
            "scheduler": synthesis.scheduler,
            "steps": str(synthesis.steps),
            "pipeline": source,
        }
        if synthesis.upscaler_steps is not None:
            metadata.update(
                upscaler=str(upscaler),
                upscaler_steps=str(synthesis.upscaler_steps),
                upscaler_strength=f"{synthesis.upscaler_strength:g}",
            )
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


def load_upscaler(source: str, sdm: LungSDMPipeline) -> LungSDMUpscalePipeline:
    """The cascade's second stage, checked against the SDM (classes, HU window, a whole multiple of its size)."""
    upscaler = load_pipeline(source, device=None, pipeline_class=LungSDMUpscalePipeline, flag=UPSCALER_ENV)
    upscaler.unet.eval()
    LungSDMCombinedPipeline.from_stages(sdm, upscaler)  # refuses stages with other classes or HU windows
    full, low = int(upscaler.unet.config.sample_size), int(sdm.unet.config.sample_size)
    if full % low or full == low:
        raise ValueError(f"{UPSCALER_ENV} {source} draws {full}-px slices, no larger whole multiple of the SDM's {low} px")
    return upscaler


def model_passes(scheduler: str, steps: int, config, strength: float = 1.0) -> int:
    """U-Net passes of one stage's sampling loop: the scheduler's timesteps, less those an upscaler skips at
    ``strength < 1`` (as :meth:`LungSDMUpscalePipeline.start_of_chain` cuts them)."""
    sampler = make_scheduler(scheduler, config)
    sampler.set_timesteps(steps)
    skipped = (steps - LungSDMUpscalePipeline.kept_steps(steps, strength)) * sampler.order
    return len(sampler.timesteps) - skipped


_load_lock = threading.Lock()


def optional_pipeline(env: str, folder: str) -> str | None:
    try:
        return find_pipeline(env, folder)
    except FileNotFoundError:
        return None


@cache
def _service() -> ModelService:
    # Without a prior the Synthesise and Compare tabs still work (removal says why it cannot); without an upscaler
    # synthesis draws the SDM's size only.
    prior, upscaler = optional_pipeline(PRIOR_ENV, PRIOR_FOLDER), optional_pipeline(UPSCALER_ENV, UPSCALER_FOLDER)
    return ModelService(find_pipeline(PIPELINE_ENV, SDM_FOLDER), prior, upscaler)


def get_service() -> ModelService:
    """The process's one :class:`ModelService` (loaded on first call)."""
    with _load_lock:  # two first requests at once must not load twice
        return _service()
