"""The Space's event handlers: they translate between Gradio components and the model service.

Editor pictures become label maps, results become stamped pictures and download files. Every handler is wrapped
by :func:`readable_errors` when wired up, so a bad upload or an absurd number comes back as a one-line message in
the UI (and to API clients), never as a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from lung_diffusers import LungSDMUpscalePipeline
from lung_diffusers.ct import ALL_NODULE_CLASSES, MALIGNANCY_SCHEME, NODULE, label_scheme

from . import display
from .mask_painting import default_pixel_mm, display_to_mask, nodule_disc, painted_labels, place_nodule
from .model_service import REQUEST_BUDGET_S, ModelService, default_controls, fresh_output_dir, write_synthesis
from .uploads import REAL_SLICE_SIZE, read_label_map, read_nodule_mask, read_real_slice, read_slice_labels

logger = logging.getLogger("lung_space")

BLANK = "blank"
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
REAL_EXAMPLE = "lidc-idri-0001_slice090.png"
MASK_SOURCES = ("painted", "label map (classes 5/6)", "mask file")


# Gradio finds the progress tracker by a parameter's default value; it binds it to the running event itself.
PROGRESS = gr.Progress()


def ui_bar(progress: gr.Progress):
    """What the model service takes to show a progress bar: description -> tqdm-like wrapper of an iterable."""
    return lambda desc: functools.partial(progress.tqdm, desc=desc)


def hide_server_paths(message: str) -> str:
    """Uploads live in the server's temporary folder; messages name them by file name only."""
    return re.sub(re.escape(tempfile.gettempdir()) + r"/\S*/", "", message)


def readable_errors(handler):
    """Turn what a user can fix (ValueError, TypeError, missing or unreadable files) into a ``gr.Error`` with the
    message; anything else into a short apology, with the traceback in the server log only."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, TypeError, FileNotFoundError, OSError) as error:
            raise gr.Error(
                hide_server_paths(str(error).strip()) or type(error).__name__, print_exception=False
            ) from None
        except Exception as error:  # noqa: BLE001 (the UI must never show a traceback)
            logger.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(
                f"Something went wrong on our side ({type(error).__name__}); the details are in the Space's log.",
                print_exception=False,
            ) from None

    return wrapped


def editor_value(picture: np.ndarray) -> dict:
    """An ImageEditor value whose background is ``picture`` and no strokes."""
    return {"background": picture, "layers": [], "composite": picture}


def resolution_label(side: int) -> str:
    return f"{side} px"


def format_seconds(seconds: float) -> str:
    return "under 1 s" if seconds < 1 else f"about {seconds:.0f} s"


class SpaceHandlers:
    """The app's event handlers, bound to one :class:`ModelService`.

    The pixel spacing field is always the spacing of the SDM's (64-px) mask, as the examples give it; a
    full-resolution (256-px) request divides it by the size ratio.
    """

    def __init__(self, service: ModelService):
        self.service = service
        self.num_classes, self.size = service.num_classes, service.size
        self.scale = display.display_scale(self.size)
        self.resolutions = {resolution_label(side): side for side in service.sizes}

    def side(self, resolution) -> int:
        """The label map's side for a resolution choice (None or empty: the SDM's own)."""
        if not resolution:
            return self.size
        if resolution not in self.resolutions:
            raise ValueError(f"unknown resolution {resolution!r}; choose one of {', '.join(self.resolutions)}")
        return self.resolutions[resolution]

    # ------------------------------------------------------------------ masks

    def labels_from_editor(self, value, side: int | None = None) -> np.ndarray:
        """The painted label map, read at ``side`` (default: the SDM's size)."""
        picture = None if value is None else value.get("composite")
        if picture is None:
            raise ValueError("there is no mask yet: start from an example or the blank mask")
        return painted_labels(np.asarray(picture), self.num_classes, side or self.size)

    def initial_mask(self, name: str) -> tuple[np.ndarray, float]:
        """An example's label map (at its own size) and the pixel spacing of its SDM-size version."""
        if name == BLANK:
            return np.zeros((self.size, self.size), np.uint8), default_pixel_mm(self.size)
        if name not in self.service.examples:
            raise ValueError(f"unknown example {name!r}; choose one of {', '.join([*self.service.examples, BLANK])}")
        labels, pixel_mm = self.service.examples[name]
        if not pixel_mm:
            return labels, default_pixel_mm(self.size)
        return labels, pixel_mm * labels.shape[0] / self.size

    def mask_outputs(self, labels: np.ndarray):
        picture = display.mask_view(labels, self.num_classes)
        return editor_value(picture), picture

    def load_example(self, example: str):
        labels, pixel_mm = self.initial_mask(example)
        return (*self.mask_outputs(labels), pixel_mm)

    def load_label_map(self, label_map_png):
        if not label_map_png:
            raise ValueError("choose a label-map PNG to load")
        try:  # kept at the full resolution when it has it (a 256-px map keeps its small nodules)
            labels = read_label_map(label_map_png, self.num_classes, self.service.full_size)
        except ValueError:
            labels = read_label_map(label_map_png, self.num_classes, self.size)
        return (*self.mask_outputs(labels), default_pixel_mm(self.size))

    def show_mask(self, mask):
        """The click-to-place view follows the editor (mask colours)."""
        return display.mask_view(self.labels_from_editor(mask), self.num_classes)

    def place_nodule(self, mask, pixel_mm, diameter_mm, nodule_class, event: gr.SelectData, resolution=None):
        """A nodule of ``diameter_mm`` where the user clicked, drawn at the chosen resolution's pixels (a 4-mm
        nodule is about 3 px at 256 px, under one at 64)."""
        side = self.side(resolution)
        labels = self.labels_from_editor(mask, side)
        row, col = display_to_mask(event.index, display.display_scale(side))
        scheme = label_scheme(self.num_classes)
        label = scheme.nodule_class(nodule_class if scheme.tells_malignancy else None)
        spacing = float(pixel_mm or 0) * self.size / side
        edited = place_nodule(labels, (row, col), float(diameter_mm), (spacing, spacing), label)
        added = int(((edited == label) & (labels != label)).sum())
        message = (
            f"Placed a {diameter_mm:g} mm nodule at row {row:.0f}, column {col:.0f} "
            f"({float(diameter_mm) / spacing:.1f} px across at {spacing:g} mm per pixel; {added} new pixel(s))."
        )
        return (*self.mask_outputs(edited), message)

    # ------------------------------------------------------------------ synthesis

    def generate(
        self,
        mask,
        scheduler,
        steps,
        guidance,
        seed,
        num_images,
        pixel_mm,
        resolution=None,
        upscaler_steps=None,
        progress=PROGRESS,
    ):
        side = self.side(resolution)
        labels = self.labels_from_editor(mask, side)
        spacing = float(pixel_mm) if pixel_mm else default_pixel_mm(self.size)
        if not 0.05 <= spacing <= 50:
            raise ValueError(f"pixel spacing must be 0.05-50 mm, got {pixel_mm}")
        cascade = side != self.size
        result = self.service.synthesise(
            labels, scheduler, steps, guidance, seed, num_images, ui_bar(progress),
            upscaler_steps=upscaler_steps if cascade else None,
        )  # fmt: skip
        steps_text = f"{result.steps} steps"
        prefix = "SYNTHETIC"
        if cascade:
            steps_text = f"{result.steps} + {result.upscaler_steps} steps"
            prefix = f"SYNTHETIC · {side} px"
        gallery = [
            (display.synthetic_view(grey), f"{prefix} · {scheduler} · {steps_text} · seed {image_seed}")
            for grey, image_seed in zip(result.grey, result.seeds)
        ]
        overlay = display.synthetic_overlay_view(result.grey[0], labels)
        pixel = spacing * self.size / side  # the images' own spacing
        written = write_synthesis(result, pixel, self.service.sdm_source, self.service.upscaler_source)
        size_text = ""
        if cascade:
            kept = LungSDMUpscalePipeline.kept_steps(result.upscaler_steps, result.upscaler_strength)
            size_text = (
                f" at {side} px (stage 1 at {self.size} px, then stage 2 from its image upsampled and noised: "
                f"strength {result.upscaler_strength:g}, the last {kept} of its {result.upscaler_steps} steps)"
            )
        status = (
            f"{len(result.grey)} synthetic slice(s){size_text} with {scheduler}, {steps_text}, guidance "
            f"{float(guidance):g}, in {result.seconds:.1f} s. Downloads are marked synthetic (PNG text chunk, NIfTI "
            "description)."
        )
        return gallery, overlay, [str(p) for p in written], status

    def expected_time(self, resolution, scheduler, steps, guidance, num_images, upscaler_steps=None) -> str:
        """What a request with these settings will take here (from the start-up timing), and the time limit."""
        side = self.side(resolution)
        images = int(num_images or 1)
        seconds = self.service.expected_seconds(side, scheduler, int(steps), float(guidance), images, upscaler_steps)
        text = f"Expected: {format_seconds(seconds / images)} per image"
        if images > 1:
            text += f", {format_seconds(seconds)} for {images}"
        if side == self.size:
            return text + "."
        most = self.service.max_steps(side, scheduler, float(guidance), images, upscaler_steps)
        if seconds <= REQUEST_BUDGET_S:
            return text + f" (a {side}-px request may take about {REQUEST_BUDGET_S:.0f} s: at most {most} steps here)."
        advice = f"use at most {most} steps" if most else "ask for fewer images or stage-2 steps"
        return text + f": over the {REQUEST_BUDGET_S:.0f} s a {side}-px request may take; {advice}."

    def step_limits(self, resolution, scheduler, guidance, num_images, upscaler_steps, steps):
        """The Steps slider's range for these settings: time-limited at full resolution, as before at the SDM's."""
        side = self.side(resolution)
        most = max(1, self.service.max_steps(side, scheduler, float(guidance), int(num_images or 1), upscaler_steps))
        return gr.update(maximum=most, value=min(int(steps or 1), most))

    def show_stage_two(self, resolution):
        """The stage-2 steps slider shows at full resolution only."""
        return gr.update(visible=self.side(resolution) != self.size)

    def sampler_defaults(self, resolution):
        """Scheduler and Steps go to the default for the chosen size: DDPM's short stochastic chain in stage 2
        leaves noise at full resolution, so the cascade has its own (measured) default."""
        name, steps = default_controls(cascade=self.side(resolution) != self.size)
        return gr.update(value=name), gr.update(value=steps)

    def compare(self, mask, schedulers, step_counts, seed, guidance, progress=PROGRESS):
        labels = self.labels_from_editor(mask)
        try:
            counts = [int(s) for s in str(step_counts).replace(";", ",").split(",") if s.strip()]
        except ValueError:
            raise ValueError(
                f"step counts must be whole numbers separated by commas, e.g. 10, 25; got {step_counts!r}"
            ) from None
        runs = self.service.compare(labels, schedulers, counts, seed, guidance, ui_bar(progress))
        gallery, table = [], []
        for run in runs:
            dice = "n/a (no lung)" if np.isnan(run.dice) else f"{run.dice:.3f}"
            caption = f"SYNTHETIC · {run.scheduler} · {run.steps} steps · {run.seconds:.2f} s · lung Dice {dice}"
            gallery.append((display.synthetic_view(run.grey), caption))
            table.append([run.scheduler, run.steps, round(run.seconds, 2), dice])
        return gallery, table

    # ------------------------------------------------------------------ real slices

    def load_real_slice(self, files, slice_index):
        image, pixel_mm, source = read_real_slice(files or [], slice_index)
        return (
            editor_value(display.real_view(image)),
            pixel_mm,
            display.real_view(image),
            "",
            f"Loaded {source}: {REAL_SLICE_SIZE} px at {pixel_mm:.3g} mm per pixel.",
            MASK_SOURCES[0],
            None,
        )

    def load_real_example(self):
        facts = json.loads((EXAMPLES_DIR / "examples.json").read_text())[REAL_EXAMPLE]
        image, _, _ = read_real_slice(EXAMPLES_DIR / REAL_EXAMPLE)
        labels_path = str(EXAMPLES_DIR / facts["labels"])
        labels = read_slice_labels(labels_path, None, self.num_classes)
        return (
            editor_value(display.real_view(image)),
            facts["pixel_mm"][0],
            display.real_overlay_view(image, labels),
            "",
            f"Loaded the example: {facts['source']} {facts['licence']}.",
            MASK_SOURCES[1],
            labels_path,
        )

    @staticmethod
    def slice_from_editor(value) -> np.ndarray:
        background = None if value is None else value.get("background")
        if background is None:
            raise ValueError("load a real slice first (or the example)")
        background = np.asarray(background)
        side = background.shape[0]
        if background.shape[:2] != (side, side) or side % REAL_SLICE_SIZE:
            raise ValueError(
                f"the slice picture is {background.shape[1]}x{side}; expected {REAL_SLICE_SIZE} px or a multiple"
            )
        step = side // REAL_SLICE_SIZE
        grey = background[::step, ::step]
        return grey[..., 0] if grey.ndim == 3 else grey

    @staticmethod
    def painted_nodule(value) -> np.ndarray:
        """Where the user painted on the slice (the brush's layer), at slice size: any painted block counts."""
        from lung_diffusers.ct import resize_binary_mask

        layers = (
            [] if value is None else [np.asarray(layer) for layer in value.get("layers") or [] if layer is not None]
        )
        if not layers:
            return np.zeros((REAL_SLICE_SIZE, REAL_SLICE_SIZE), bool)
        painted = np.zeros(layers[0].shape[:2], bool)
        for layer in layers:
            # Layers come back without alpha (image_mode RGB): unpainted is black; keep pixels at least half painted.
            painted |= (layer[..., 3] >= 128) if layer.shape[-1] == 4 else (layer[..., :3].max(axis=-1) >= 128)
        return resize_binary_mask(painted, REAL_SLICE_SIZE)

    def follow_painting(self, real_slice, nodule_source):
        """The nodule source switches to "painted" as soon as there is paint on the slice."""
        painted = real_slice is not None and self.painted_nodule(real_slice).any()
        return MASK_SOURCES[0] if painted else nodule_source

    def nodule_for_removal(self, value, source, mask_file, labels_file, slice_index) -> np.ndarray:
        if source == MASK_SOURCES[0]:
            nodule = self.painted_nodule(value)
            if not nodule.any():
                raise ValueError("paint over the nodule on the slice first (or choose another nodule mask source)")
            return nodule
        if source == MASK_SOURCES[1]:
            if not labels_file:
                raise ValueError("load the slice's label map, or paint the nodule")
            labels = read_slice_labels(labels_file, slice_index, MALIGNANCY_SCHEME.num_classes)
            nodule = np.isin(labels, ALL_NODULE_CLASSES)
            if not nodule.any():
                raise ValueError("the label map has no nodule (class 5 or 6) on this slice; paint it instead")
            return nodule
        if source == MASK_SOURCES[2]:
            if not mask_file:
                raise ValueError("upload a nodule mask file (binary PNG or NIfTI), or paint the nodule")
            return read_nodule_mask(mask_file, slice_index)
        raise ValueError(f"unknown nodule mask source {source!r}; choose one of {', '.join(MASK_SOURCES)}")

    def edit_outputs(self, edit, pixel_mm):
        result_caption = (
            "healthy counterfactual (SYNTHETIC)" if edit.kind == "removal" else "nodule inserted (SYNTHETIC)"
        )
        gallery = [
            (display.real_view(edit.input_image), "input (REAL)"),
            (display.synthetic_view(edit.images[0]), result_caption),
            (display.difference_view(edit.difference), "difference map, red = brighter with the nodule (SYNTHETIC)"),
        ]
        out_pixel_mm = float(pixel_mm) * REAL_SLICE_SIZE / edit.images.shape[-1]
        written = edit.save(fresh_output_dir(), pixel_mm=(out_pixel_mm, out_pixel_mm))
        return gallery, [str(p) for p in written.values()]

    def remove(
        self,
        real_slice,
        nodule_source,
        nodule_mask_file,
        label_map_file,
        slice_index,
        pixel_mm,
        repaint_settings,
        seed,
        samples,
        progress=PROGRESS,
    ):
        image = self.slice_from_editor(real_slice)
        nodule = self.nodule_for_removal(real_slice, nodule_source, nodule_mask_file, label_map_file, slice_index)
        edit = self.service.remove_nodule(image, nodule, repaint_settings, seed, samples, ui_bar(progress))
        gallery, files = self.edit_outputs(edit, pixel_mm)
        return (
            gallery,
            files,
            f"Removed the nodule ({int(nodule.sum())} px, dilated) with RePaint, {repaint_settings} settings.",
        )

    def mark_insertion(self, real_slice, label_map_file, slice_index, pixel_mm, diameter_mm, event: gr.SelectData):
        image = self.slice_from_editor(real_slice)
        scale = display.display_scale(REAL_SLICE_SIZE)
        row, col = display_to_mask(event.index, scale)
        spacing = float(pixel_mm or default_pixel_mm(REAL_SLICE_SIZE))
        disc = nodule_disc(image.shape, (row, col), float(diameter_mm), (spacing, spacing))
        labels = (
            read_slice_labels(label_map_file, slice_index, MALIGNANCY_SCHEME.num_classes)
            if label_map_file
            else np.zeros(image.shape, np.uint8)
        )
        view = display.real_overlay_view(image, np.where(disc, NODULE, labels).astype(np.uint8))
        return f"{row:.0f}, {col:.0f}", view

    def insert(
        self,
        real_slice,
        label_map_file,
        slice_index,
        nodule_centre,
        pixel_mm,
        diameter_mm,
        nodule_class,
        repaint_settings,
        seed,
        progress=PROGRESS,
    ):
        image = self.slice_from_editor(real_slice)
        if not label_map_file:
            raise ValueError(
                "inserting needs the slice's label map (the SDM draws the nodule from it): load one, or the example"
            )
        labels = read_slice_labels(label_map_file, slice_index, self.num_classes)
        try:
            row, col = (float(v) for v in str(nodule_centre).split(","))
        except ValueError:
            raise ValueError("click on the slice where the nodule goes (or type 'row, column')") from None
        spacing = float(pixel_mm or default_pixel_mm(REAL_SLICE_SIZE))
        disc = nodule_disc(image.shape, (row, col), float(diameter_mm), (spacing, spacing))
        edit = self.service.insert_nodule(image, labels, disc, repaint_settings, seed, nodule_class, ui_bar(progress))
        gallery, files = self.edit_outputs(edit, pixel_mm)
        return (
            gallery,
            files,
            f"Inserted a {float(diameter_mm):g} mm nodule at ({row:.0f}, {col:.0f}) with RePaint, {repaint_settings} settings.",
        )
