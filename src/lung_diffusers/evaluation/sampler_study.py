"""Which sampler, how many steps: quality against time for the samplers of :mod:`lung_diffusers.scheduler_registry`.

:func:`run_sampler_study` samples the same held-out masks and seeds with every setting of a grid (by default the
issue's :data:`THESIS_GRID`) and measures each: lung Dice (:func:`~lung_diffusers.evaluation.fidelity.lung_dice`),
high-frequency noise in the lungs (:func:`~lung_diffusers.evaluation.lung_noise.lung_high_frequency_noise`),
optionally a distance to real slices (the evaluation passes a Fréchet Radiomics Distance), and seconds per image
(the pipeline calls only, timed per setting). :func:`choose_default` picks the entry points' default from the
results; :func:`quality_time_figure` and :func:`results_table` report them.

Each setting's images are cached by content (the pipeline's weights and configs, the sampler's config, steps,
guidance, masks, seeds, device and dtype) as ``.npy`` with a ``.json`` beside it holding the timing, both written
atomically and the ``.json`` last: an interrupted study resumes at the first unfinished setting.

Every scheduler is built from the pipeline's own scheduler config (as ``load_pipeline(..., scheduler=name)`` does),
so the noise schedule and the learned variance stay the checkpoint's; the pipeline gets its scheduler back after
the study.

Plain numpy and SciPy on import; torch, tqdm and matplotlib are imported by the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic_write import atomic_file, write_text_atomically
from ..scheduler_registry import get_entry
from .fidelity import lung_dice, lung_mask, mean_over_images
from .lung_noise import lung_high_frequency_noise

# The figures each result holds, by attribute name (the keys of choose_default's spreads).
METRICS = ("lung_dice", "lung_noise_hu", "distance")
# Bump when the cached images' meaning changes, so old caches are not reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class SamplerSetting:
    """One sampler setting of the study.

    Args:
        sampler: a command-line or display name of :mod:`lung_diffusers.scheduler_registry` (stored as the
            command-line name).
        steps: denoising steps (``num_inference_steps``).
        guidance: classifier-free guidance scale (1 disables guidance).
    """

    sampler: str
    steps: int
    guidance: float = 1.0

    def __post_init__(self):
        entry = get_entry(self.sampler)  # an unknown name: ValueError listing the registry's names
        if not entry.sdm:
            raise ValueError(
                f"the sampler {self.sampler!r} cannot sample LungSDMPipeline; choose one the registry marks sdm"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if (
            isinstance(self.guidance, bool)
            or not isinstance(self.guidance, (int, float, np.number))
            or not 0 <= self.guidance < math.inf
        ):
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        object.__setattr__(self, "sampler", entry.name)
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "guidance", float(self.guidance))

    @property
    def label(self) -> str:
        """What reports show: ``"DPM-Solver++ 25"``, ``"UniPC 10, guidance 1.5"``."""
        text = f"{get_entry(self.sampler).display_name} {self.steps}"
        return text if self.guidance == 1 else f"{text}, guidance {self.guidance:g}"

    @property
    def slug(self) -> str:
        """A file-name-safe name: ``"dpm-25-g1"``."""
        return f"{self.sampler}-{self.steps}-g{self.guidance:g}"


# The grid (issue 18, part 4): DDPM 1000 is the reference; guidance 1 throughout, and 1.5 for two settings.
# The reference runs last: it costs more than all the others together (about 41 s per image on 2 CPU cores for the
# demo SDM), and the cache keeps each finished setting, so an interrupted study has the cheap ones.
BASELINE = SamplerSetting("ddpm", 1000)
THESIS_GRID: tuple[SamplerSetting, ...] = (
    SamplerSetting("ddim", 50),
    SamplerSetting("dpm", 5),
    SamplerSetting("dpm", 10),
    SamplerSetting("dpm", 25),
    SamplerSetting("unipc", 5),
    SamplerSetting("unipc", 10),
    SamplerSetting("euler", 25),
    SamplerSetting("heun", 10),
    SamplerSetting("dpm", 25, 1.5),
    SamplerSetting("unipc", 10, 1.5),
    BASELINE,
)
# Stochastic samplers with fewer steps. The first full study (16 masks x 2 seeds on the demo SDM) found every
# deterministic setting of the grid above further from real slices by FRD (guarded 7.3-7.9) than DDPM 1000 (5.7)
# by more than two real patients differ (0.96), while lung Dice and lung noise agreed: the ODE samplers lose
# texture that ancestral sampling keeps. These ask how few stochastic steps keep it.
STOCHASTIC_GRID: tuple[SamplerSetting, ...] = (
    SamplerSetting("euler-ancestral", 25),
    SamplerSetting("euler-ancestral", 50),
    SamplerSetting("ddpm", 50),
    SamplerSetting("ddpm", 100),
    SamplerSetting("ddpm", 250),
)


def default_sampler_grid() -> list[SamplerSetting]:
    """The issue's grid (:data:`THESIS_GRID`) and :data:`STOCHASTIC_GRID`, DDPM 1000 last."""
    return [*THESIS_GRID[:-1], *STOCHASTIC_GRID, BASELINE]


def quick_grid() -> list[SamplerSetting]:
    """Three cheap settings for tests and ``--quick`` runs: DDPM 3 (the reference), DPM-Solver++ 2 and UniPC 2 with
    guidance 1.5 (so the guided path runs too)."""
    return [SamplerSetting("ddpm", 3), SamplerSetting("dpm", 2), SamplerSetting("unipc", 2, 1.5)]


@dataclass
class SamplerResult:
    """What one setting scored.

    Args:
        setting: the sampler, steps and guidance.
        seconds_per_image: wall-clock seconds of the pipeline calls over the number of images.
        lung_dice: mean lung Dice over the images whose mask has lung.
        lung_noise_hu: mean high-frequency lung noise (HU) over the images where it is defined.
        distance: the distance to the real slices (`None` when none was asked for).
        num_images: images generated (masks x seeds).
        unet_passes: U-Net evaluations per image (``pipe.num_timesteps``; Heun takes about two per step).
        images: the HU images, ``(seeds, masks, H, W)`` float32.
        from_cache: whether the images (and the timing) were read from the cache.
    """

    setting: SamplerSetting
    seconds_per_image: float
    lung_dice: float
    lung_noise_hu: float
    distance: float | None = None
    num_images: int = 0
    unet_passes: int | None = None
    images: np.ndarray | None = field(default=None, repr=False, compare=False)
    from_cache: bool = False


# ---------------------------------------------------------------------------------------------- the study


def run_sampler_study(
    pipe,
    masks: np.ndarray,
    seeds: Sequence[int],
    grid: Sequence[SamplerSetting] | None = None,
    *,
    distance: Callable[[np.ndarray, np.ndarray], float] | None = None,
    real_images: np.ndarray | None = None,
    pixel_mm: float | Sequence[float] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    batch_size: int = 8,
) -> list[SamplerResult]:
    """Sample every mask with every seed under each setting of ``grid``, and measure each setting.

    Args:
        pipe: a :class:`~lung_diffusers.LungSDMPipeline` (its own progress bar is left as it is).
        masks: label maps ``(N, H, W)`` of the model's size (held-out patients').
        seeds: one ``torch.Generator`` per image is seeded with its seed, so an image depends only on its mask,
            seed and setting (not on the batch).
        grid: the settings (default :func:`default_sampler_grid`).
        distance: ``distance(real_images, synthetic_images) -> float`` on HU arrays ``(n, H, W)``; needs
            ``real_images``.
        real_images: the real slices (HU) the distance compares against.
        pixel_mm: the pixel size in mm (one for all masks, or one per mask) for the lung noise's smoothing.
        cache_dir: where each setting's images and timing are cached (`None`: no cache).
        progress: a progress bar per setting.
        batch_size: masks per pipeline call.

    Returns:
        One :class:`SamplerResult` per setting, in the grid's order.
    """
    masks = _check_masks(masks)
    seeds = _check_seeds(seeds)
    grid = default_sampler_grid() if grid is None else list(grid)
    if not grid or not all(isinstance(s, SamplerSetting) for s in grid):
        raise ValueError("grid must be a non-empty sequence of SamplerSetting")
    if distance is not None and real_images is None:
        raise ValueError("distance needs real_images, the real slices (HU) it compares the synthetic ones with")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    pixel_sizes = _pixel_sizes(pixel_mm, len(masks))

    from tqdm.auto import tqdm

    from ..scheduler_registry import make_scheduler

    original = pipe.scheduler
    base_config = original.config
    identity = _pipeline_identity(pipe)
    masks_digest = hashlib.sha256(repr(masks.shape).encode() + masks.tobytes()).hexdigest()
    results, warmed_up = [], False
    try:
        for setting in grid:
            pipe.scheduler = make_scheduler(setting.sampler, base_config)
            key = _cache_key(identity, pipe, setting, masks_digest, seeds)
            cached = _read_cache(cache_dir, setting, key, (len(seeds), *masks.shape))
            if cached is not None:
                images, record = cached
                if progress:
                    tqdm.write(f"{setting.label}: {len(seeds) * len(masks)} images from the cache")
            else:
                if not warmed_up:  # first-call costs (allocations, kernel choice) stay out of the timings
                    pipe(masks[:1], num_inference_steps=1, generator=_generators(0, 1), output_type="latent")
                    warmed_up = True
                bar = tqdm(total=len(seeds) * len(masks), desc=setting.label, unit="image", disable=not progress)
                images, record = _generate(pipe, masks, seeds, setting, batch_size, bar)
                bar.close()
                _write_cache(cache_dir, setting, key, images, record)
            results.append(
                _measure(setting, images, masks, record, pixel_sizes, distance, real_images, cached is not None)
            )
    finally:
        pipe.scheduler = original
    return results


def _generate(pipe, masks, seeds, setting, batch_size, bar) -> tuple[np.ndarray, dict]:
    import torch

    images = np.empty((len(seeds), *masks.shape), np.float32)
    seconds = 0.0
    for s, seed in enumerate(seeds):
        for start in range(0, len(masks), batch_size):
            batch = masks[start : start + batch_size]
            began = time.perf_counter()
            hu = pipe(
                batch,
                num_inference_steps=setting.steps,
                guidance_scale=setting.guidance,
                generator=_generators(seed, len(batch)),
                output_type="hu",
            ).images  # HU on the CPU: the device has finished when the clock stops
            seconds += time.perf_counter() - began
            images[s, start : start + len(batch)] = hu
            bar.update(len(batch))
    record = {
        "seconds_per_image": seconds / (len(seeds) * len(masks)),
        "unet_passes": int(pipe.num_timesteps),
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
    }
    return images, record


def _generators(seed: int, count: int):
    import torch

    return [torch.Generator().manual_seed(int(seed)) for _ in range(count)]


def _measure(setting, images, masks, record, pixel_sizes, distance, real_images, from_cache) -> SamplerResult:
    has_lung = [bool(lung_mask(mask).any()) for mask in masks]
    dice, noise = [], []
    for per_seed in images:
        for hu, mask, lung, pixel in zip(per_seed, masks, has_lung, pixel_sizes):
            dice.append(lung_dice(hu, mask))
            noise.append(lung_high_frequency_noise(hu, mask, pixel) if lung else math.nan)
    value = None
    if distance is not None:
        value = float(distance(np.asarray(real_images), images.reshape(-1, *images.shape[2:])))
    return SamplerResult(
        setting=setting,
        seconds_per_image=float(record["seconds_per_image"]),
        lung_dice=mean_over_images(dice)[0],
        lung_noise_hu=mean_over_images(noise)[0],
        distance=value,
        num_images=len(dice),
        unet_passes=record.get("unet_passes"),
        images=images,
        from_cache=from_cache,
    )


def _check_masks(masks) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or not masks.shape[0] or not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(
            f"masks must be an integer array (N, H, W) of label maps with N >= 1, got {masks.dtype} {masks.shape}"
        )
    return np.ascontiguousarray(masks)


def _check_seeds(seeds) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat ({seeds}): a repeated seed gives the same images again")
    return [int(s) for s in seeds]


def _pixel_sizes(pixel_mm, count: int) -> list[float | None]:
    if pixel_mm is None or np.ndim(pixel_mm) == 0:
        return [pixel_mm] * count
    sizes = [float(p) for p in pixel_mm]
    if len(sizes) != count:
        raise ValueError(f"pixel_mm has {len(sizes)} values for {count} masks; give one per mask or one for all")
    return sizes


# ---------------------------------------------------------------------------------------------- the cache


def _pipeline_identity(pipe) -> str:
    """sha256 of the pipeline's class, its config and every model's weights and config (not the scheduler's:
    each setting's key holds the scheduler it samples with)."""
    import torch

    digest = hashlib.sha256(type(pipe).__name__.encode())
    digest.update(_json(_public(pipe.config)).encode())
    for name, component in sorted(pipe.components.items()):
        if not isinstance(component, torch.nn.Module):
            continue
        digest.update(name.encode() + _json(_public(getattr(component, "config", {}))).encode())
        for key, tensor in component.state_dict().items():
            tensor = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key}:{tensor.dtype}:{tensor.numel()}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cache_key(identity: str, pipe, setting: SamplerSetting, masks_digest: str, seeds: list[int]) -> str:
    scheduler = pipe.scheduler
    content = {
        "version": CACHE_VERSION,
        "pipeline": identity,
        "scheduler": [type(scheduler).__name__, _public(scheduler.config)],
        "steps": setting.steps,
        "guidance": setting.guidance,
        "masks": masks_digest,
        "seeds": seeds,
        # Images (and timings) of another device or precision are not the same.
        "device": pipe.device.type,
        "dtype": str(pipe.unet.dtype),
    }
    return hashlib.sha256(_json(content).encode()).hexdigest()


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _public(config) -> dict:
    """A diffusers config without its private entries: ``_name_or_path`` (where it was loaded from) and
    ``_use_default_values`` (whose order follows string hashing, so changes between processes) would change the key
    of the same model."""
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


def _cache_paths(cache_dir, setting: SamplerSetting, key: str) -> tuple[Path, Path]:
    stem = f"{setting.slug}-{key[:16]}"  # not Path.with_suffix: "g1.5" would lose its ".5..."
    return Path(cache_dir) / f"{stem}.npy", Path(cache_dir) / f"{stem}.json"


def _read_cache(cache_dir, setting, key, shape) -> tuple[np.ndarray, dict] | None:
    if cache_dir is None:
        return None
    images_path, record_path = _cache_paths(cache_dir, setting, key)
    try:
        record = json.loads(record_path.read_text())
        images = np.load(images_path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # not there yet, or unreadable: generate again
    if record.get("key") != key or images.shape != shape:
        return None
    return images, record


def _write_cache(cache_dir, setting, key, images, record) -> None:
    if cache_dir is None:
        return
    images_path, record_path = _cache_paths(cache_dir, setting, key)
    with atomic_file(images_path) as tmp:
        np.save(tmp, images)
    # The record last: it marks the setting finished.
    write_text_atomically(record_path, json.dumps({"key": key, "setting": setting.label, **record}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- the choice


def choose_default(
    results: Sequence[SamplerResult], baseline: SamplerResult | SamplerSetting, spreads: dict[str, float]
) -> SamplerSetting | None:
    """The fewest steps at which every metric differs from the baseline's by no more than its spread.

    Only settings with guidance 1 count, and the baseline itself does not. Ties of steps go to the faster one.

    Args:
        results: the study's results.
        baseline: DDPM 1000's result (or its setting, looked up in ``results``).
        spreads: metric (``lung_dice``, ``lung_noise_hu``, ``distance``) -> the largest difference allowed, e.g.
            that metric's spread between real patients. A result missing a metric (NaN or `None`) fails it.

    Returns:
        The chosen setting; `None` when no setting qualifies.

    Raises:
        ValueError: no spreads, an unknown metric or a negative spread, a baseline setting not among the results,
            or a baseline without one of the metrics.
    """
    if not spreads:
        raise ValueError(f"spreads is empty: give the allowed difference of at least one of {', '.join(METRICS)}")
    for metric, spread in spreads.items():
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r} in spreads; use {', '.join(METRICS)}")
        if not spread >= 0:
            raise ValueError(f"the spread of {metric} must be >= 0, got {spread!r}")
    if isinstance(baseline, SamplerSetting):
        found = [r for r in results if r.setting == baseline]
        if not found:
            raise ValueError(f"the baseline {baseline.label} is not among the results; run it in the study")
        baseline = found[0]
    for metric in spreads:
        if not _defined(getattr(baseline, metric)):
            raise ValueError(f"the baseline {baseline.setting.label} has no {metric}; it cannot be compared")

    def close(result: SamplerResult) -> bool:
        return all(
            _defined(getattr(result, metric)) and abs(getattr(result, metric) - getattr(baseline, metric)) <= spread
            for metric, spread in spreads.items()
        )

    candidates = [r for r in results if r.setting.guidance == 1 and r.setting != baseline.setting and close(r)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.setting.steps, r.seconds_per_image)).setting


def _defined(value) -> bool:
    return value is not None and not math.isnan(value)


# ---------------------------------------------------------------------------------------------- reports


def results_table(results: Sequence[SamplerResult]) -> str:
    """The results as a markdown table (a distance column only when some result has one)."""
    with_distance = any(r.distance is not None for r in results)
    header = ["sampler", "steps", "guidance", "U-Net passes", "s / image", "lung Dice", "lung noise (HU)"]
    header += ["distance"] if with_distance else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [
            get_entry(r.setting.sampler).display_name,
            str(r.setting.steps),
            f"{r.setting.guidance:g}",
            "" if r.unet_passes is None else str(r.unet_passes),
            f"{r.seconds_per_image:.3g}",
            _number(r.lung_dice, ".3f"),
            _number(r.lung_noise_hu, ".1f"),
        ]
        cells += [_number(r.distance, ".2f")] if with_distance else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _number(value, spec: str) -> str:
    return "n/a" if not _defined(value) else format(value, spec)


def quality_time_figure(
    results: Sequence[SamplerResult], path: str | Path, spreads: dict[str, float] | None = None
) -> Path:
    """Lung Dice, lung noise and (where present) the distance against seconds per image (log scale), each point
    labelled with its setting (triangles: guided); DDPM 1000's value, when in the results, as a dashed line, and
    with ``spreads`` (:func:`choose_default`'s) the band within which a setting counts as close to it.
    Written atomically as PNG."""
    try:
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the quality-time figure needs matplotlib: pip install 'lung-diffusers[eval]'") from None
    if not results:
        raise ValueError("no results to plot")
    panels = [("lung_dice", "lung Dice"), ("lung_noise_hu", "lung noise (HU)")]
    if any(r.distance is not None for r in results):
        panels.append(("distance", "distance to real slices"))
    figure = Figure(figsize=(6 * len(panels), 4.5))
    figure.subplots_adjust(left=0.8 / (6 * len(panels)), right=0.98, bottom=0.12, top=0.95, wspace=0.2)
    FigureCanvasAgg(figure)  # a canvas of its own: no pyplot state, no display needed
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    baseline = next((r for r in results if r.setting == BASELINE), None)
    by_time = sorted(results, key=lambda r: r.seconds_per_image)
    for ax, (metric, title) in zip(axes, panels):
        for k, r in enumerate(by_time):
            value = getattr(r, metric)
            if not _defined(value):
                continue
            guided = r.setting.guidance != 1
            ax.scatter(r.seconds_per_image, value, marker="^" if guided else "o", color="C1" if guided else "C0")
            # Neighbours in time take turns above and below their point, and the slower half is labelled on the
            # left, so labels overlap less and stay inside the figure.
            left = k >= len(by_time) / 2
            offset = (-4 if left else 4, 4 if k % 2 == 0 else -10)
            ax.annotate(
                r.setting.label,
                (r.seconds_per_image, value),
                textcoords="offset points",
                xytext=offset,
                ha="right" if left else "left",
                fontsize=7,
            )
        if baseline is not None and _defined(getattr(baseline, metric)):
            ax.axhline(getattr(baseline, metric), color="grey", linestyle="--", linewidth=0.8)
            if spreads and _defined(spreads.get(metric)):
                centre, spread = getattr(baseline, metric), spreads[metric]
                ax.axhspan(centre - spread, centre + spread, color="grey", alpha=0.12, linewidth=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.margins(x=0.1, y=0.1)
        ax.set_xlabel("seconds per image")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    path = Path(path)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return path
