"""A synthesis run under accelerate: every process generates its share of the global batches, the main one merges.

1. Every process loads the checkpoint and the masks and resolves the settings (the main process first, so that
   downloads and the ``datasets`` cache are filled once).
2. The main process creates or checks the output folder (``synthesis_settings.json``) and tells the others.
3. Every process lists the unfinished batches, and all wait until all have listed them: nothing is written
   before, so all see the same list. Process ``k`` of ``P`` takes list items ``k, k + P, ...``.
4. Each batch is generated and written as one shard, atomically. A killed run loses at most the batches in
   flight; a rerun skips the shards that exist.
5. When all processes are done, the main one merges the shards into ``data/``, writes the card and the contact
   sheet, and pushes to the Hub if asked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..ct import MALIGNANCY_LABEL_NAMES
from .card import write_dataset_card
from .checkpoint import CheckpointRef, load_pipeline, resolve_checkpoint
from .dataset_files import (
    CONTACT_SHEET,
    SETTINGS_FILE,
    finished_batches,
    merge_shards,
    output_features,
    prepare_output_folder,
    write_log,
    write_shard,
)
from .generation import generate_batch, run_fields
from .mask_plan import MaskSampler, nodule_size_range
from .mask_source import MaskSource, load_mask_source, resolve_config
from .schedulers import check_scheduler_name
from .settings import DEFAULT_NOISE_LEVEL, DEFAULT_UPSCALER_STRENGTH, MaskSpec, SynthesisRequest, SynthesisSettings


@dataclass
class SynthesisResult:
    """What one process did in one launch (``data_files`` and ``pushed`` on every process after the merge)."""

    output: Path
    settings: SynthesisSettings
    process_index: int
    num_processes: int
    batches: list[int] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    data_files: list[Path] = field(default_factory=list)
    pushed: str | None = None


def synthesize(request: SynthesisRequest, log=print) -> SynthesisResult:
    """Run (or resume) a synthesis into ``request.output``; see the module docstring."""
    request.check()
    import torch

    torch.set_num_threads(request.threads)
    accelerator = make_accelerator(request.cpu)
    if accelerator.device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # autotuning may pick other kernels on each launch
        torch.backends.cudnn.deterministic = True
    main = accelerator.is_main_process
    scheduler_class = check_scheduler_name(request.scheduler)

    with accelerator.main_process_first():  # Hub downloads and the datasets cache, once
        checkpoint = resolve_checkpoint(request.pipeline, request.revision, request.cache_dir)
        upscaler = None
        if request.upscaler is not None:
            upscaler = resolve_checkpoint(request.upscaler, request.upscaler_revision, request.cache_dir, "--upscaler")
        spec = resolve_config(MaskSpec.parse(request.masks), request.cache_dir)
        pipe = load_pipeline(checkpoint, scheduler_class, accelerator.device, upscaler)
        # A cascade's masks are taken at the second stage's size: placed nodules are sized in its pixels.
        source = load_mask_source(spec, pipe.unet.config.num_classes, output_size(pipe), request.cache_dir)
    if spec.split == "test" and main:
        log(f"warning: masks from the test split of {spec.dataset}: keep these images out of any model tested on it")
    settings = resolve_settings(request, checkpoint, pipe, source, upscaler)
    check_sampler(pipe, settings)
    sampler = MaskSampler(settings, source)
    features = output_features(source.dataset.features, settings.cascade)
    output = Path(request.output)

    def start() -> tuple[SynthesisSettings, str]:
        prepare_output_folder(output, settings)
        # The folder's own settings: on a resume they name the inputs as the first launch spelled them (./sdm
        # rather than /home/me/sdm), so that every row of the run says the same.
        stored = SynthesisSettings.from_json((output / SETTINGS_FILE).read_text())
        return stored, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")

    settings, launch = on_main_process(accelerator, start)
    source.spec = MaskSpec(settings.masks_dataset, settings.masks_config, settings.masks_split)
    done = finished_batches(output, settings)
    pending = sorted(set(range(settings.num_batches)) - set(done))
    accelerator.wait_for_everyone()  # all have listed the pending batches before any is written

    mine = pending[accelerator.process_index :: accelerator.num_processes]
    result = SynthesisResult(output, settings, accelerator.process_index, accelerator.num_processes, batches=mine)
    if main:
        log(
            f"synthesize: {settings.num_images} images in {settings.num_batches} batches of {settings.batch_size}; "
            f"{len(done)} done, {len(pending)} to make on {accelerator.num_processes} process(es) "
            f"({accelerator.device}, {settings.torch_threads} thread(s) each); output {output}"
        )
    shared = run_fields(settings, accelerator.device)
    started = time.perf_counter()
    with progress_bar(settings, output, done, enabled=main) as progress:
        for batch_index in mine:
            write_shard(output, batch_index, generate_batch(pipe, sampler, settings, batch_index, shared), features)
            result.images += len(settings.batch_range(batch_index))
            progress()
    result.seconds = time.perf_counter() - started
    write_log(output, f"launch-{launch}-process-{accelerator.process_index}", _process_record(result, launch, shared))
    accelerator.wait_for_everyone()
    wall = time.perf_counter() - started

    def finish():
        made = sum(len(settings.batch_range(b)) for b in pending)
        rate = made / wall if made and wall > 0 else None
        record = {"launch": launch, "num_processes": accelerator.num_processes, "images": made, "seconds": round(wall, 3)}
        write_log(output, f"launch-{launch}", {**record, "images_per_second": rate and round(rate, 4)})
        if made:
            log(f"made {made} images in {wall:.1f} s: {rate:.2f} images/s on {accelerator.num_processes} process(es)")
        return finalize(output, settings, request.push_to_hub, log)

    result.data_files, result.pushed = on_main_process(accelerator, finish)
    return result


def output_size(pipe) -> int:
    """The side of the images a pipeline draws: the U-Net's, or a cascade's second stage's."""
    unet = pipe.upscaler_unet if hasattr(pipe, "upscaler_unet") else pipe.unet
    return int(unet.config.sample_size)


def resolve_settings(
    request: SynthesisRequest, checkpoint: CheckpointRef, pipe, source: MaskSource, upscaler: CheckpointRef | None = None
) -> SynthesisSettings:
    """The settings of this run: the request plus what it resolved to (commit, hashes, config, sizes)."""
    unet = pipe.unet.config
    seven_classes = unet.num_classes == len(MALIGNANCY_LABEL_NAMES)
    stage_two = {}
    if upscaler is not None:
        stage_two = dict(
            upscaler=upscaler.name,
            upscaler_revision=upscaler.revision,
            upscaler_weights_sha256=upscaler.weights_sha256,
            upscaler_configs_sha256=upscaler.configs_sha256,
            low_res_size=unet.sample_size,
            upscaler_num_inference_steps=request.upscaler_steps or request.steps,
            noise_level=DEFAULT_NOISE_LEVEL if request.noise_level is None else request.noise_level,
            upscaler_strength=(
                DEFAULT_UPSCALER_STRENGTH if request.upscaler_strength is None else float(request.upscaler_strength)
            ),
        )
    return SynthesisSettings(
        pipeline=checkpoint.name,
        pipeline_revision=checkpoint.revision,
        weights_sha256=checkpoint.weights_sha256,
        configs_sha256=checkpoint.configs_sha256,
        image_size=output_size(pipe),
        num_classes=unet.num_classes,
        masks_dataset=source.spec.dataset,
        masks_config=source.spec.config,
        masks_split=source.spec.split,
        masks_rows=len(source),
        masks_sha256=source.sha256,
        num_images=request.num_images,
        batch_size=request.batch_size,
        seed=request.seed,
        scheduler=request.scheduler,
        scheduler_class=check_scheduler_name(request.scheduler),
        num_inference_steps=request.steps,
        guidance_scale=float(request.guidance),
        nodule_fraction=request.nodule_fraction,
        malignant_fraction=request.malignant_fraction if request.nodule_fraction and seven_classes else None,
        nodule_diameter_mm=nodule_size_range(source, unet.num_classes, request.nodule_fraction, request.nodule_diameter_mm),
        torch_threads=request.threads,
        dtype=str(pipe.unet.dtype).removeprefix("torch."),
        **stage_two,
    )


def finalize(output: Path, settings: SynthesisSettings, push_to_hub: str | None = None, log=print) -> tuple[list[Path], str | None]:
    """Merge the shards, write the card and the contact sheet, push if asked. Safe to re-run."""
    from .contact_sheet import write_contact_sheet
    from .summary import summarize

    files = merge_shards(output, settings)
    malignancy = settings.num_classes == len(MALIGNANCY_LABEL_NAMES)
    sheet = write_contact_sheet(files, output / CONTACT_SHEET, settings.seed, malignancy=malignancy)
    write_dataset_card(output, settings, summarize(files, settings.num_classes), has_contact_sheet=sheet is not None)
    log(f"wrote {settings.num_images} rows to {output} (load_dataset({str(output)!r}, split='train'))")
    pushed = None
    if push_to_hub:
        from .hub import push_synthetic_dataset

        pushed = push_synthetic_dataset(output, push_to_hub)
        log(f"pushed to the Hub: {pushed}")
    return files, pushed


def make_accelerator(cpu: bool = False):
    """An Accelerator that sees every process torchrun / accelerate started.

    On a machine without a GPU, accelerate treats each process launched by torchrun as alone unless it is told
    ``cpu=True``: each would make every image. So CPU is forced there, and a mismatch with ``WORLD_SIZE`` is an
    error rather than silent duplicate work.
    """
    import torch
    from accelerate import Accelerator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(cpu=cpu or (world > 1 and not torch.cuda.is_available()))
    if accelerator.num_processes != world:
        raise ValueError(
            f"launched as {world} processes, but accelerate sees {accelerator.num_processes}: each would do all the "
            "work. On CPU launch with `torchrun --nproc_per_node N`; on GPUs with `accelerate launch --multi_gpu`"
        )
    return accelerator


def on_main_process(accelerator, function):
    """``function()`` on the main process; every process returns its result or raises its error.

    Errors are passed on, so the other processes stop with the same message instead of waiting forever.
    """
    outcome = [None]
    if accelerator.is_main_process:
        try:
            outcome = [("ok", function())]
        except (ValueError, FileNotFoundError, NotADirectoryError, OSError) as error:
            outcome = [("error", type(error).__name__, str(error))]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome)
    if outcome[0][0] == "error":
        _, name, message = outcome[0]
        raise _PASSED_ON_ERRORS.get(name, OSError)(message)
    return outcome[0][1]


_PASSED_ON_ERRORS = {e.__name__: e for e in (ValueError, FileNotFoundError, NotADirectoryError)}


def check_sampler(pipe, settings: SynthesisSettings) -> None:
    """Refuse steps, a scheduler or a noise level the checkpoint (and upscaler) cannot sample with, before the
    output folder is touched."""
    stages = [("--steps", pipe.base if settings.cascade else pipe, settings.num_inference_steps)]
    if settings.cascade:
        if settings.image_size % settings.low_res_size:
            raise ValueError(
                f"--upscaler draws {settings.image_size}-px slices, which is no whole multiple of --pipeline's "
                f"{settings.low_res_size} px: give the two stages of one cascade"
            )
        stages.append(("--upscaler-steps", pipe.upscaler, settings.upscaler_num_inference_steps))
        try:
            pipe.upscaler.check_noise_level(settings.noise_level)
        except ValueError as error:
            raise ValueError(f"--noise-level: {error}") from None
    for flag, stage, steps in stages:
        train_steps = stage.scheduler.config.num_train_timesteps
        if not 1 <= steps <= train_steps:
            raise ValueError(f"{flag} must be between 1 and the scheduler's {train_steps} training steps, got {steps}")
        stage.check_scheduler()


# tqdm's default turns the rate into s/img below 1 img/s; images/s reads the same at any speed.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


class progress_bar:  # noqa: N801 (used as a context manager, like tqdm)
    """The main process's bar over all images of the run; it counts every process's shards, so the rate is the
    run's images/s."""

    def __init__(self, settings: SynthesisSettings, output: Path, done: list[int], enabled: bool):
        self.settings, self.output, self.enabled = settings, output, enabled
        self.initial = sum(len(settings.batch_range(b)) for b in done)

    def __enter__(self):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.settings.num_images, initial=self.initial, unit="img", desc="synthesize",
            disable=not self.enabled, dynamic_ncols=True, bar_format=BAR_FORMAT,
        )
        return self.update

    def update(self) -> None:
        if not self.enabled:
            return
        images = sum(len(self.settings.batch_range(b)) for b in finished_batches(self.output, self.settings))
        self.bar.update(images - self.bar.n)

    def __exit__(self, *exc_info) -> None:
        self.update()
        self.bar.close()


def _process_record(result: SynthesisResult, launch: str, shared: dict) -> dict:
    return {
        "launch": launch,
        "process_index": result.process_index,
        "num_processes": result.num_processes,
        "batches": result.batches,
        "images": result.images,
        "seconds": round(result.seconds, 3),
        "images_per_second": round(result.images / result.seconds, 4) if result.images and result.seconds else None,
        "device": shared["device"],
        "torch_threads": shared["torch_threads"],
    }

