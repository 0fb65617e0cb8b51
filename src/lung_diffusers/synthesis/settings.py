"""What a synthesis run is asked to do (:class:`SynthesisRequest`) and what decides its rows (:class:`SynthesisSettings`).

No heavy imports here, so that ``lung-diffusers --help`` stays quick.

The settings are stored as ``synthesis_settings.json`` in the output folder when a run starts. A rerun into the
same folder must resolve to the same settings (it then resumes); anything else is refused, because its shards
would mix two runs. The checkpoint and the masks are compared by content (their hashes), not by how their paths
are spelled: ``./sdm`` and ``/home/me/sdm``, or a relative path given from another folder, are the same inputs.
The same holds for a cascade's second stage (``--upscaler``), which the settings record as they record the checkpoint.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..scheduler_registry import default_sampling
from .schedulers import check_scheduler_name

FORMAT_VERSION = 1
DEFAULT_BATCH_SIZE = 8
# One torch thread per process: scale-out comes from processes, and the thread count changes the float
# arithmetic (see the package docstring), so it must not follow the number of cores.
DEFAULT_THREADS = 1
# LungSDMUpscalePipeline's default augmentation level, repeated so that --help need not import torch (a test
# checks that the two agree).
DEFAULT_NOISE_LEVEL = 100
# Its default strength (the share of its steps it runs, from stage 1's image upsampled and noised), likewise.
DEFAULT_UPSCALER_STRENGTH = 0.4
# A cascade's settings or rows written before the strength was recorded: stage 2 then ran its whole chain.
STRENGTH_BEFORE_RECORDED = 1.0
# "config" or "config/split" after the last colon of --masks.
_CONFIG_SPLIT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")


@dataclass(frozen=True)
class MaskSpec:
    """``DATASET[:config[/split]]``: a local dataset folder or Hub repo id, a config (None: the dataset's
    default) and a split (default ``train``, so that test patients' masks stay out of training data)."""

    dataset: str
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, text: str) -> MaskSpec:
        text = str(text).strip()
        if not text:
            raise ValueError("--masks is empty; give DATASET[:config[/split]], e.g. data/luna16-slices:healthy/train")
        dataset, colon, rest = text.rpartition(":")
        if not colon or not dataset or Path(text).exists() or not _CONFIG_SPLIT.match(rest):
            return cls(text)
        config, _, split = rest.partition("/")
        return cls(dataset, config or None, split or "train")

    def __str__(self) -> str:
        return f"{self.dataset}:{self.config or '(default)'}/{self.split}"


@dataclass(frozen=True)
class SynthesisRequest:
    """The options of ``lung-diffusers synthesize`` (see ``--help``); :meth:`check` validates them."""

    pipeline: str
    masks: str
    num_images: int
    output: Path
    scheduler: str | None = None  # None: default_sampling's (the cascade's with an upscaler)
    steps: int | None = None
    guidance: float = 1.0
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    nodule_fraction: float | None = None
    malignant_fraction: float = 0.5
    nodule_diameter_mm: tuple[float, float] | None = None
    revision: str | None = None
    threads: int = DEFAULT_THREADS
    push_to_hub: str | None = None
    cpu: bool = False
    cache_dir: str | None = None
    upscaler: str | None = None
    upscaler_revision: str | None = None
    upscaler_steps: int | None = None
    noise_level: int | None = None
    upscaler_strength: float | None = None

    def __post_init__(self):
        scheduler, steps = default_sampling(cascade=self.upscaler is not None)
        if self.scheduler is None:
            object.__setattr__(self, "scheduler", scheduler)
        if self.steps is None:
            object.__setattr__(self, "steps", steps)

    def check(self) -> None:
        """Refuse values that cannot work, before anything is loaded."""
        counts = {"--num-images": self.num_images, "--steps": self.steps, "--batch-size": self.batch_size,
                  "--threads": self.threads, "--upscaler-steps": self.upscaler_steps}  # fmt: skip
        for flag, value in counts.items():
            if value is None and flag == "--upscaler-steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")
        stage_two = {"--upscaler-revision": self.upscaler_revision, "--upscaler-steps": self.upscaler_steps,
                     "--noise-level": self.noise_level, "--upscaler-strength": self.upscaler_strength}  # fmt: skip
        given = [flag for flag, value in stage_two.items() if value is not None]
        if self.upscaler is None and given:
            raise ValueError(f"{given[0]} sets the cascade's second stage; give --upscaler as well")
        level = self.noise_level
        if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
            raise ValueError(f"--noise-level must be an integer >= 0 (0: no augmentation), got {level!r}")
        strength = self.upscaler_strength
        if strength is not None and (
            isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1
        ):
            raise ValueError(
                f"--upscaler-strength must be a share of the second stage's steps in (0, 1] (1: from pure noise), "
                f"got {strength!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed must be an integer in [0, 2**63), got {self.seed!r}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise ValueError(f"--guidance must be a finite number >= 0 (1 disables guidance), got {self.guidance}")
        check_scheduler_name(self.scheduler)
        for flag, value in (("--nodule-fraction", self.nodule_fraction), ("--malignant-fraction", self.malignant_fraction)):
            if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{flag} must be between 0 and 1, got {value}")
        if self.nodule_diameter_mm is not None:
            low, high = self.nodule_diameter_mm
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"--nodule-diameter-mm needs 0 < MIN <= MAX, got {low} {high}")
            if self.nodule_fraction is None:
                raise ValueError("--nodule-diameter-mm sizes placed nodules; give --nodule-fraction as well")
        MaskSpec.parse(self.masks)


@dataclass(frozen=True)
class SynthesisSettings:
    """Everything that decides the rows of a synthetic dataset; stored in ``synthesis_settings.json``.

    Attributes:
        pipeline, pipeline_revision: the checkpoint as given (folder or Hub repo id) and, for a Hub repo, the
            commit it resolved to.
        weights_sha256: sha256 of the checkpoint's weights file (of a manifest when there are several; see
            :func:`~lung_diffusers.synthesis.checkpoint.weights_sha256`).
        configs_sha256: sha256 of the checkpoint's configs (``model_index.json`` and its components' configs; see
            :func:`~lung_diffusers.synthesis.checkpoint.configs_sha256`). None in settings files written before it
            was recorded.
        image_size, num_classes: the side of the images (the U-Net's; with an upscaler, its own) and the classes;
            masks are resized to ``image_size``, so placed nodules are sized in its pixels.
        masks_dataset, masks_config, masks_split: where the masks come from (the config resolved when not given).
        masks_rows, masks_sha256: the split's row count and a hash of its masks and ids.
        scheduler, scheduler_class: the ``--scheduler`` name and the diffusers class it selects (built with
            ``from_config`` of the checkpoint's scheduler config).
        nodule_fraction: share of images that get a placed nodule (None: masks used as they are).
        malignant_fraction: 7-class models: share of placed nodules that are malignant (None for 6 classes).
        nodule_diameter_mm: range placed nodules' diameters are drawn from (None without placement).
        torch_threads: torch's intra-op threads per process (the float arithmetic depends on it).
        upscaler, upscaler_revision, upscaler_weights_sha256, upscaler_configs_sha256: a cascade's second stage
            (:class:`~lung_diffusers.LungSDMUpscalePipeline`), recorded as the checkpoint is; all None without one.
        low_res_size: the first stage's side in a cascade (its maps are made from the full-resolution ones).
        upscaler_num_inference_steps, noise_level: the second stage's steps and augmentation level (its sampler
            is ``scheduler``, its guidance ``guidance_scale``, as the first stage's).
        upscaler_strength: the share of those steps the second stage runs, from the first stage's image upsampled
            and noised (``LungSDMCombinedPipeline``'s ``upscaler_strength``). None in a cascade's settings written
            before it was recorded, whose second stage ran its whole chain (:data:`STRENGTH_BEFORE_RECORDED`).
    """

    pipeline: str
    pipeline_revision: str | None
    weights_sha256: str
    image_size: int
    num_classes: int
    masks_dataset: str
    masks_config: str
    masks_split: str
    masks_rows: int
    masks_sha256: str
    num_images: int
    batch_size: int
    seed: int
    scheduler: str
    scheduler_class: str
    num_inference_steps: int
    guidance_scale: float
    nodule_fraction: float | None
    malignant_fraction: float | None
    nodule_diameter_mm: tuple[float, float] | None
    torch_threads: int
    dtype: str = "float32"
    format_version: int = FORMAT_VERSION
    configs_sha256: str | None = None
    upscaler: str | None = None
    upscaler_revision: str | None = None
    upscaler_weights_sha256: str | None = None
    upscaler_configs_sha256: str | None = None
    low_res_size: int | None = None
    upscaler_num_inference_steps: int | None = None
    noise_level: int | None = None
    upscaler_strength: float | None = None

    @property
    def cascade(self) -> bool:
        """Whether the images come through both stages of a cascade."""
        return self.upscaler is not None

    @property
    def num_batches(self) -> int:
        return -(-self.num_images // self.batch_size)

    def batch_range(self, batch_index: int) -> range:
        """Global image indices of one global batch: batches are fixed by the settings, never by the processes."""
        start = batch_index * self.batch_size
        return range(start, min(start + self.batch_size, self.num_images))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SynthesisSettings:
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}")
        if values.get("nodule_diameter_mm") is not None:
            values["nodule_diameter_mm"] = tuple(values["nodule_diameter_mm"])
        return cls(**values)

    def differences(self, other: SynthesisSettings) -> list[str]:
        """Names of the settings that differ from ``other``'s, where a difference changes the rows.

        A local checkpoint folder (no Hub revision) and the masks are the same inputs when their content is, which
        ``weights_sha256``, ``configs_sha256`` and ``masks_sha256`` (with the rows, config and split) decide: how
        their paths were spelled is not compared. A Hub checkpoint is its repo id at its commit. The same goes for
        an upscaler (its ``upscaler_*`` hashes).
        """
        mine, theirs = asdict(self), asdict(other)
        ignored = {"masks_dataset"}
        if self.pipeline_revision is None and other.pipeline_revision is None:
            ignored.add("pipeline")
        if self.cascade and other.cascade and self.upscaler_revision is None and other.upscaler_revision is None:
            ignored.add("upscaler")
        if None in (self.configs_sha256, other.configs_sha256):
            ignored.add("configs_sha256")  # not recorded by older versions: the weights' hash still decides
        return [name for name in mine if name not in ignored and mine[name] != theirs.get(name)]
