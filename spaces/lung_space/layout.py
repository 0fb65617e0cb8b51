"""The Gradio app: three tabs (Synthesise, Compare schedulers, Remove / insert a nodule) wired to the handlers.

Jobs that run a model share one queue group (at most ``LUNG_SPACE_CONCURRENCY`` at once, whatever the tab);
loading and mask edits are cheap and never wait behind them.
"""

from __future__ import annotations

import html
import os

import gradio as gr

from lung_diffusers.ct import NODULE, NODULE_SCHEME, label_scheme

from .handlers import BLANK, MASK_SOURCES, SpaceHandlers, readable_errors
from .mask_painting import class_names, css_colour, default_pixel_mm, palette
from .model_service import (
    DEFAULT_SAMPLER,
    DEFAULT_SAMPLER_STEPS,
    DEFAULT_UPSCALER_STEPS,
    MAX_EDIT_SAMPLES,
    MAX_IMAGES,
    MAX_SLIDER_STEPS,
    MAX_UPSCALER_STEPS,
    REPAINT_SETTINGS,
    SCHEDULERS,
    ModelService,
    get_service,
)
from .uploads import REAL_SLICE_SIZE

CONCURRENCY = int(os.environ.get("LUNG_SPACE_CONCURRENCY", "2"))
QUEUE_SIZE = int(os.environ.get("LUNG_SPACE_QUEUE_SIZE", "64"))
# Every model job, of any tab, in one group: memory holds at most CONCURRENCY jobs' tensors.
MODEL_JOBS = {"concurrency_id": "model", "concurrency_limit": CONCURRENCY}
LIGHT = {"concurrency_limit": None, "show_progress": "hidden"}  # loading and mask edits: quick, never queued behind
# The brush colour for marking a nodule on a real slice (the nodule class colour).
NODULE_PAINT = tuple(int(v) for v in NODULE_SCHEME.colours[NODULE])

INTRO = """\
# lung-diffusers: synthetic lung CT slices from label maps
Paint a label map (body, lungs, trachea, nodule), pick a sampler and watch a **synthetic** CT slice appear.
The model is a Semantic Diffusion Model packaged for 🤗 diffusers.
**Every image here is synthetic and marked so. Not for diagnosis or any clinical use.**
"""


def legend_html(num_classes: int) -> str:
    swatches = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:12px">'
        f'<span style="width:14px;height:14px;background:{css_colour(rgb)};border:1px solid #888;margin-right:4px"></span>'
        f"{value} {html.escape(name)}</span>"
        for value, (name, rgb) in enumerate(zip(class_names(num_classes), palette(num_classes)))
    )
    return f'<div id="class-legend" style="font-size:0.9em">{swatches}</div>'


def build_app(service: ModelService | None = None) -> gr.Blocks:
    """The Space's Blocks (queue configured); ``service`` defaults to the process's one."""
    service = service or get_service()
    h = SpaceHandlers(service)
    names = [*service.examples, BLANK]
    first_labels, first_spacing = h.initial_mask(names[0])
    first_editor, first_view = h.mask_outputs(first_labels)
    colours = [css_colour(rgb) for rgb in palette(h.num_classes)]
    editor_side = h.size * h.scale
    wrap = readable_errors
    resolutions = list(h.resolutions)  # "64 px" first: the default, as before; "256 px" with an upscaler
    spacing_info = f"({default_pixel_mm(h.size):g} mm)"
    if len(resolutions) > 1:  # the field stays the SDM-size spacing; full-resolution pixels are finer
        spacing_info = f"({default_pixel_mm(h.size):g} mm at {h.size} px; {resolutions[-1]} pixels are 1/{service.full_size // h.size} of it)"

    # delete_cache: results and uploads older than an hour leave Gradio's cache every half hour (bounded disk).
    with gr.Blocks(title="lung-diffusers: synthetic lung CT", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Synthesise", id="synthesise"):
            with gr.Row():
                with gr.Column():
                    with gr.Row(equal_height=True):
                        example = gr.Dropdown(
                            names, value=names[0], label="Start from", elem_id="example-mask", scale=2
                        )
                        label_upload = gr.UploadButton("Load a label-map PNG", file_types=[".png"], scale=1)
                    editor = gr.ImageEditor(
                        value=first_editor,
                        type="numpy",
                        image_mode="RGB",
                        format="png",  # webp would blur the class colours
                        brush=gr.Brush(colors=colours, default_color=colours[2], color_mode="fixed", default_size=16),
                        # The eraser removes strokes only (the mask underneath shows again). Gradio 6 also hides
                        # the whole toolbar, palette included, when eraser=False.
                        eraser=gr.Eraser(default_size=16),
                        layers=False,
                        sources=(),
                        transforms=(),
                        canvas_size=(editor_side, editor_side),
                        height=editor_side + 80,
                        label="Label map: paint with the class colours",
                        elem_id="mask-editor",
                    )
                    gr.HTML(legend_html(h.num_classes))
                    with gr.Group():
                        gr.Markdown("**Place a nodule**: set its diameter, then click on the mask below.")
                        with gr.Row():
                            diameter = gr.Slider(
                                1, 40, value=10, step=0.5, label="Nodule diameter (mm)", elem_id="nodule-diameter"
                            )
                            spacing = gr.Number(
                                value=first_spacing,
                                label="Pixel spacing (mm per pixel)",
                                info=f"the example's own; a blank or uploaded mask assumes a 360 mm field of view {spacing_info}",
                                elem_id="pixel-spacing",
                            )
                        nodule_kind = gr.Radio(
                            ["benign", "malignant"],
                            value="malignant",
                            label="Nodule class",
                            visible=label_scheme(h.num_classes).tells_malignancy,
                        )
                        click_view = gr.Image(
                            value=first_view,
                            format="png",
                            interactive=False,
                            label="Click to place a nodule",
                            elem_id="nodule-clicker",
                            height=320,
                            buttons=[],
                        )
                with gr.Column():
                    with gr.Row(equal_height=True):
                        # 256 px: both stages of the cascade, only offered when its second stage is loaded.
                        resolution = gr.Radio(
                            resolutions,
                            value=resolutions[0],
                            label="Resolution",
                            visible=len(resolutions) > 1,
                            elem_id="resolution",
                        )
                        expected_time = gr.Markdown(
                            h.expected_time(resolutions[0], DEFAULT_SAMPLER, DEFAULT_SAMPLER_STEPS, 1.0, 1),
                            elem_id="expected-time",
                        )
                    with gr.Row():
                        scheduler = gr.Dropdown(
                            list(SCHEDULERS), value=DEFAULT_SAMPLER, label="Scheduler", elem_id="scheduler"
                        )
                        steps = gr.Slider(
                            1, MAX_SLIDER_STEPS, value=DEFAULT_SAMPLER_STEPS, step=1, label="Steps", elem_id="steps"
                        )
                        upscaler_steps = gr.Slider(
                            1,
                            MAX_UPSCALER_STEPS,
                            value=DEFAULT_UPSCALER_STEPS,
                            step=1,
                            label=f"Stage-2 steps ({resolutions[-1]})",
                            visible=False,
                            elem_id="upscaler-steps",
                        )
                    with gr.Row():
                        guidance = gr.Slider(0, 5, value=1.0, step=0.1, label="Guidance scale (1 = off)")
                        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                        num_images = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Row():
                        gallery = gr.Gallery(
                            label="Synthetic slices",
                            show_label=False,
                            format="png",
                            columns=2,
                            height=420,
                            object_fit="contain",
                            elem_id="results",
                        )
                        # No label or buttons: they would sit over the SYNTHETIC banner at the top.
                        overlay = gr.Image(
                            label="Mask over the first slice",
                            show_label=False,
                            format="png",
                            interactive=False,
                            buttons=[],
                            elem_id="overlay",
                        )
                    downloads = gr.File(label="Downloads: PNG and NIfTI, marked synthetic", file_count="multiple")
                    status = gr.Markdown(label="Status", elem_id="synth-status")

        with gr.Tab("Compare schedulers", id="compare"):
            gr.Markdown(
                "The mask of the Synthesise tab, one seed, every scheduler and step count ticked here: wall time "
                "and **lung Dice** (the mask's lungs against the image's air below -500 HU, inside the body) for each."
            )
            with gr.Row():
                compare_schedulers = gr.CheckboxGroup(
                    list(SCHEDULERS), value=["DPM-Solver++", "DDIM", "UniPC"], label="Schedulers"
                )
                compare_steps = gr.Textbox(value="10, 25", label="Step counts (comma-separated)")
                compare_seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                compare_guidance = gr.Slider(0, 5, value=1.0, step=0.1, label="Guidance scale")
            compare_btn = gr.Button("Compare", variant="primary")
            compare_gallery = gr.Gallery(
                label="Side by side",
                show_label=False,
                format="png",
                columns=4,
                height=460,
                object_fit="contain",
                elem_id="compare-results",
            )
            compare_table = gr.Dataframe(
                headers=["scheduler", "steps", "seconds", "lung Dice"], label="Speed and fidelity"
            )

        with gr.Tab("Remove / insert a nodule", id="edit"):
            gr.Markdown(
                "Edit a **real** slice with RePaint. *Remove*: paint over a nodule (or use the label map's) and the "
                "healthy prior fills it with healthy tissue. *Insert*: click where a nodule should go; the SDM draws it "
                "from the slice's label map (at the SDM's 64 px). Both show the difference map."
            )
            with gr.Row():
                with gr.Column():
                    real_files = gr.File(
                        label="Real slice: PNG (lung window), NIfTI, or DICOM file(s)",
                        file_count="multiple",
                        height=140,
                    )
                    with gr.Row():
                        slice_index = gr.Number(
                            value=None, precision=0, minimum=0, label="Slice index (volumes; 0 = most inferior)"
                        )
                        real_spacing = gr.Number(
                            value=default_pixel_mm(REAL_SLICE_SIZE),
                            label=f"Pixel spacing at {REAL_SLICE_SIZE} px (mm)",
                        )
                    with gr.Row():
                        load_real_btn = gr.Button("Load slice")
                        real_example_btn = gr.Button("Load the example (LIDC-IDRI-0001)", elem_id="real-example")
                    labels_file = gr.File(label="Label map of the slice (PNG or NIfTI): needed to insert", height=140)
                    real_editor = gr.ImageEditor(
                        type="numpy",
                        image_mode="RGB",
                        format="png",
                        brush=gr.Brush(colors=[css_colour(NODULE_PAINT)], color_mode="fixed", default_size=8),
                        eraser=gr.Eraser(default_size=8),
                        layers=False,
                        sources=(),
                        transforms=(),
                        canvas_size=(REAL_SLICE_SIZE * 2, REAL_SLICE_SIZE * 2),
                        label="Real slice: paint over the nodule to remove",
                        elem_id="real-editor",
                    )
                    mask_source = gr.Radio(list(MASK_SOURCES), value=MASK_SOURCES[0], label="Nodule mask to remove")
                    nodule_mask_file = gr.File(
                        label="Nodule mask file (binary PNG / NIfTI, or a label map)", height=140
                    )
                    with gr.Row():
                        repaint_settings = gr.Radio(
                            list(REPAINT_SETTINGS), value="quick", label="RePaint settings (paper: minutes on CPU)"
                        )
                        edit_seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                        edit_samples = gr.Slider(1, MAX_EDIT_SAMPLES, value=1, step=1, label="Samples (removal)")
                    remove_btn = gr.Button("Remove the nodule", variant="primary")
                with gr.Column():
                    insert_view = gr.Image(
                        label="Click where a nodule should go",
                        format="png",
                        interactive=False,
                        buttons=[],
                        elem_id="insert-clicker",
                    )
                    with gr.Row():
                        insert_center = gr.Textbox(
                            label="Nodule centre (row, column) in slice pixels", elem_id="insert-centre"
                        )
                        insert_diameter = gr.Slider(2, 40, value=12, step=0.5, label="Diameter (mm)")
                        malignancy = gr.Radio(
                            ["benign", "malignant"],
                            value="malignant",
                            label="Nodule class",
                            visible=label_scheme(h.num_classes).tells_malignancy,
                        )
                    insert_btn = gr.Button("Insert a nodule", variant="primary")
                    edit_gallery = gr.Gallery(
                        label="Input, result, difference",
                        show_label=False,
                        format="png",
                        columns=3,
                        height=360,
                        object_fit="contain",
                        elem_id="edit-results",
                    )
                    edit_files = gr.File(label="Downloads, marked synthetic", file_count="multiple")
                    edit_status = gr.Markdown(label="Status", elem_id="edit-status")

        # --- Synthesise
        example.change(wrap(h.load_example), example, [editor, click_view, spacing], api_name="load_example", **LIGHT)
        label_upload.upload(
            wrap(h.load_label_map), label_upload, [editor, click_view, spacing], api_name="load_label_map", **LIGHT
        )
        # `.input` is what a brush stroke fires in Gradio 6 (`.change` does not).
        editor.input(wrap(h.show_mask), editor, click_view, api_visibility="private", **LIGHT)
        click_view.select(
            wrap(h.place_nodule),
            [editor, spacing, diameter, nodule_kind, resolution],
            [editor, click_view, status],
            api_visibility="private",
            **LIGHT,
        )
        generate_btn.click(
            wrap(h.generate),
            # The last two are new and have defaults: API clients that send the first seven get 64 px as before.
            [editor, scheduler, steps, guidance, seed, num_images, spacing, resolution, upscaler_steps],
            [gallery, overlay, downloads, status],
            api_name="generate",
            **MODEL_JOBS,
        )
        # The expected time follows every setting it depends on; the Steps range follows all but the steps.
        timing = [resolution, scheduler, steps, guidance, num_images, upscaler_steps]
        gr.on(
            [c.change for c in timing], wrap(h.expected_time), timing, expected_time, api_visibility="private", **LIGHT
        )
        gr.on(
            [c.change for c in timing if c is not steps],
            wrap(h.step_limits),
            [resolution, scheduler, guidance, num_images, upscaler_steps, steps],
            steps,
            api_visibility="private",
            **LIGHT,
        )
        resolution.change(wrap(h.show_stage_two), resolution, upscaler_steps, api_visibility="private", **LIGHT).then(
            wrap(h.sampler_defaults), resolution, [scheduler, steps], api_visibility="private", **LIGHT
        )
        # --- Compare
        compare_btn.click(
            wrap(h.compare),
            [editor, compare_schedulers, compare_steps, compare_seed, compare_guidance],
            [compare_gallery, compare_table],
            api_name="compare",
            **MODEL_JOBS,
        )
        # --- Remove / insert
        real_outputs = [real_editor, real_spacing, insert_view, insert_center, edit_status, mask_source, labels_file]
        load_real_btn.click(
            wrap(h.load_real_slice), [real_files, slice_index], real_outputs, api_name="load_slice", **LIGHT
        )
        real_example_btn.click(wrap(h.load_real_example), None, real_outputs, api_name="load_slice_example", **LIGHT)
        # Painting on the slice means "remove what I painted".
        real_editor.input(
            wrap(h.follow_painting), [real_editor, mask_source], mask_source, api_visibility="private", **LIGHT
        )
        insert_view.select(
            wrap(h.mark_insertion),
            [real_editor, labels_file, slice_index, real_spacing, insert_diameter],
            [insert_center, insert_view],
            api_visibility="private",
            **LIGHT,
        )
        remove_btn.click(
            wrap(h.remove),
            [
                real_editor,
                mask_source,
                nodule_mask_file,
                labels_file,
                slice_index,
                real_spacing,
                repaint_settings,
                edit_seed,
                edit_samples,
            ],
            [edit_gallery, edit_files, edit_status],
            api_name="remove_nodule",
            **MODEL_JOBS,
        )
        insert_btn.click(
            wrap(h.insert),
            [
                real_editor,
                labels_file,
                slice_index,
                insert_center,
                real_spacing,
                insert_diameter,
                malignancy,
                repaint_settings,
                edit_seed,
            ],
            [edit_gallery, edit_files, edit_status],
            api_name="insert_nodule",
            **MODEL_JOBS,
        )
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo
