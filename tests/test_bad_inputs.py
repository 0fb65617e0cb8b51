"""Bad inputs, each with its expected outcome: those tried for issue 15 across the Python API, the command lines,
the data recipe and the Space, kept as a regression table.

Every row names what a user did wrong and what they get: an exception of one type whose message says what to do
(or a warning, where the input runs but is doubtful); for a command, an exit status (2 bad input, 1 a failure) with
one line on stderr, no traceback, and nothing written; in the Space, a one-line message instead of a traceback.
A bad input found later gets a row here.

The models are the bundled 64-px demo pipelines (``pipelines/``), loaded once per module; no row samples more than
one step.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from lung_support import run_script, tiny_sdm

from lung_diffusers import (
    LungRePaintPipeline,
    LungSDMPipeline,
    is_synthetic,
    save_synthetic_nifti,
    save_synthetic_png,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINES = REPO_ROOT / "pipelines"
PREPARE_SCRIPT = REPO_ROOT / "dataset_scripts" / "prepare_luna16.py"
SPACE_DIR = REPO_ROOT / "spaces"
if str(SPACE_DIR) not in sys.path:  # the Space's package, imported as its app imports it
    sys.path.insert(0, str(SPACE_DIR))

MINE = "mine"  # the content of the user's own files, which no refused call may change


# ---------------------------------------------------------------------------------------------- inputs


def chest(size: int, nodule: bool = True) -> np.ndarray:
    """A label map with the recipe's classes: body 1, right lung 3 (image left), left lung 2, a nodule 5."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    labels = np.zeros((size, size), np.uint8)
    labels[((rows - 0.5) / 0.42) ** 2 + ((cols - 0.5) / 0.46) ** 2 < 1] = 1
    labels[((rows - 0.5) / 0.28) ** 2 + ((cols - 0.30) / 0.14) ** 2 < 1] = 3
    labels[((rows - 0.5) / 0.22) ** 2 + ((cols - 0.70) / 0.11) ** 2 < 1] = 2
    if nodule:
        labels[((rows - 0.5) / 0.05) ** 2 + ((cols - 0.70) / 0.05) ** 2 < 1] = 5
    return labels


def slice_picture(labels: np.ndarray) -> np.ndarray:
    """A uint8 lung-window picture of ``labels``: bright body, dark lungs, a bright nodule."""
    return np.choose(np.minimum(labels, 5), [0, 180, 30, 30, 10, 170]).astype(np.uint8)


CHEST64 = chest(64)
SLICE64 = slice_picture(CHEST64)
KEEP64 = (CHEST64 != 5).astype(np.uint8)  # RePaint's mask: 1 keep, 0 regenerate (the nodule)


def write_png(path: Path, array: np.ndarray) -> str:
    PIL.Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


def write_volume(path: Path, slices: int = 3) -> str:
    """A small NIfTI CT volume in HU: ``slices`` slices of 64 x 64."""
    import SimpleITK as sitk

    volume = np.stack([np.full((64, 64), -500 + 100 * k, np.int16) for k in range(slices)])
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    return str(path)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, shared_dir):
    """The bundled pipelines, a tiny SDM U-Net and the files the rows name (``{name}`` in a command line)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    sdm = LungSDMPipeline.from_pretrained(PIPELINES / "lung-sdm-64")
    prior = LungRePaintPipeline.from_pretrained(PIPELINES / "lung-ddpm-prior-64")
    for pipe in (sdm, prior):
        pipe.set_progress_bar_config(disable=True)
    unet = tiny_sdm()

    labels256 = chest(256)
    for folder in ("busy", "empty", "not-a-pipeline"):
        (root / folder).mkdir()
    (root / "busy" / "figure.png").write_text(MINE)  # a user's folder, e.g. `--output .`
    (root / "a_file.png").write_text(MINE)
    (root / "not-a-pipeline" / "notes.txt").write_text("no model_index.json here")
    (root / "garbage.pt").write_text("not a checkpoint")
    (root / "config.json").write_text(json.dumps({"num_classes": 6, "model_channels": 32}))
    (root / "not-json.json").write_text("{num_classes: 6")
    files = {
        "sdm": str(PIPELINES / "lung-sdm-64"),
        "prior": str(PIPELINES / "lung-ddpm-prior-64"),
        "lidc": str(shared_dir / "data" / "lidc-mini"),
        "slice": write_png(root / "slice.png", slice_picture(labels256)),
        "slice_wide": write_png(root / "slice_wide.png", np.zeros((256, 320))),
        "volume": write_volume(root / "volume.nii.gz"),
        "labels": write_png(root / "labels.png", labels256),
        "labels_x50": write_png(root / "labels_x50.png", labels256 * 50),
        "labels_healthy": write_png(root / "labels_healthy.png", chest(256, nodule=False)),
        "labels_128": write_png(root / "labels_128.png", chest(128)),
        "labels_malignant": write_png(root / "labels_malignant.png", np.where(labels256 == 5, 6, labels256)),
        "not_binary": write_png(root / "not_binary.png", np.minimum(labels256, 3)),
        "busy": str(root / "busy"),
        "a_file": str(root / "a_file.png"),
        "empty": str(root / "empty"),
        "not_pipeline": str(root / "not-a-pipeline"),
        "garbage_pt": str(root / "garbage.pt"),
        "config": str(root / "config.json"),
        "not_json": str(root / "not-json.json"),
    }
    return SimpleNamespace(sdm=sdm, prior=prior, unet=unet, files=files)


@pytest.fixture
def c(ctx, tmp_path):
    """``ctx`` with this row's own empty folder as ``c.tmp``; afterwards, the user's files are as they were."""
    ctx.tmp = tmp_path
    yield ctx
    assert Path(ctx.files["a_file"]).read_text() == MINE
    assert [p.name for p in Path(ctx.files["busy"]).iterdir()] == ["figure.png"]
    assert Path(ctx.files["busy"], "figure.png").read_text() == MINE


# ---------------------------------------------------------------------------------------------- the Python API

def scheduler(name: str, **config):
    import diffusers

    return getattr(diffusers, name)(**config)


def fresh_sdm(c, sampler=None):
    """A pipeline around the bundled SDM's U-Net: its own scheduler, and its own once-per-pipeline warnings."""
    pipe = LungSDMPipeline(unet=c.sdm.unet, scheduler=sampler or scheduler("DDPMScheduler", **c.sdm.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdm(c, segmentation=CHEST64, pipe=None, **kwargs):
    """One step of the bundled SDM, unless the inputs are refused first."""
    return (pipe or c.sdm)(segmentation, **{"num_inference_steps": 1, "output_type": "np", **kwargs})


def fresh_repaint(c, unet=None):
    pipe = LungRePaintPipeline(
        unet=unet or c.prior.unet, scheduler=scheduler("DDPMScheduler", **c.prior.scheduler.config)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def repaint(c, pipe=None, image=SLICE64, mask_image=KEEP64, **kwargs):
    """Two steps of RePaint with the bundled healthy prior, unless the inputs are refused first."""
    settings = {"num_inference_steps": 2, "jump_length": 1, "jump_n_sample": 1, "output_type": "np", **kwargs}
    return (pipe or c.prior)(image, mask_image, **settings)


def set_scheduler(pipe, value):
    pipe.scheduler = value


def unet_forward(c, sample_shape=(1, 1, 16, 16), timestep=10, **kwargs):
    kwargs.setdefault("segmentation", torch.zeros(sample_shape[0], 16, 16, dtype=torch.long))
    return c.unet(torch.zeros(sample_shape), timestep, **kwargs)


def nodule_edit(kind: str = "removal"):
    from lung_diffusers.inpainting import NoduleEdit

    nodule = np.zeros((16, 16), bool)
    nodule[6:9, 6:9] = True
    zeros = np.zeros((16, 16), np.float32)
    return NoduleEdit(kind, zeros, nodule, nodule, zeros[None], zeros)


def save_edit_twice(c):
    nodule_edit().save(c.tmp / "run")
    nodule_edit().save(c.tmp / "run")


def api(row_id: str, call, expected: type[BaseException] | type[Warning], match: str, marks=()):
    return pytest.param(call, expected, match, id=row_id, marks=marks)


# One row per line: a table.
# fmt: off
API_ROWS = [
    # LungSDMPipeline: label maps
    api("sdm-map-bool", lambda c: sdm(c, CHEST64 > 0), TypeError, r"integer class ids, got numpy dtype bool"),
    api("sdm-map-strings", lambda c: sdm(c, CHEST64.astype(str)), TypeError, r"integer class ids, got numpy dtype <U"),
    api("sdm-map-a-path", lambda c: sdm(c, "mask.png"), TypeError, r"a numpy array, a torch tensor, a PIL image .* got str"),
    api("sdm-map-fractional", lambda c: sdm(c, CHEST64 + 0.5), ValueError, r"fractional values; labels must be whole"),
    api("sdm-map-nan", lambda c: sdm(c, np.where(CHEST64 == 5, np.nan, CHEST64)), ValueError, r"NaN or infinite"),
    api("sdm-map-negative", lambda c: sdm(c, CHEST64.astype(int) - 1), ValueError, r"must lie in \[0, 6\) .*got -1"),
    api("sdm-map-class-7", lambda c: sdm(c, np.where(CHEST64 == 5, 7, CHEST64)), ValueError, r"\[0, 6\) .*got 7"),
    api("sdm-map-malignant", lambda c: sdm(c, np.where(CHEST64 == 5, 6, CHEST64)), ValueError, r"\[0, 6\) .*got 6"),
    api("sdm-map-scaled-x50", lambda c: sdm(c, CHEST64.astype(int) * 50), ValueError, r"got 50, 100, .*divide the map by 50"),
    api("sdm-map-1d", lambda c: sdm(c, CHEST64.ravel()), ValueError, r"shape \(H, W\), \(B, H, W\) .*got \(4096,\)"),
    api("sdm-map-5d", lambda c: sdm(c, CHEST64[None, None, None]), ValueError, r"got \(1, 1, 1, 64, 64\)"),
    api("sdm-map-empty", lambda c: sdm(c, np.zeros((0, 0), np.uint8)), ValueError, r"positive multiples of 4 .*got 0x0"),
    api("sdm-map-empty-list", lambda c: sdm(c, []), ValueError, r"segmentation is an empty list"),
    api("sdm-map-mixed-sizes", lambda c: sdm(c, [CHEST64, chest(48)]), ValueError, r"must share one size"),
    api("sdm-map-colour-array", lambda c: sdm(c, np.stack([CHEST64] * 3, -1)), ValueError, r"looks like a colour image"),
    api("sdm-map-pil-rgb", lambda c: sdm(c, PIL.Image.fromarray(CHEST64).convert("RGB")), ValueError, r"got mode RGB"),
    # LungSDMPipeline: sizes against the trained 64 px
    api("sdm-map-32px", lambda c: sdm(c, chest(32)), ValueError, r"32x32, but this model was trained on 64x64 .*resize"),
    api("sdm-map-not-a-multiple", lambda c: sdm(c, chest(62)), ValueError, r"multiples of 4 .*got 62x62"),
    api("sdm-map-64x80-warns", lambda c: sdm(c, np.zeros((64, 80), np.uint8), fresh_sdm(c)), UserWarning, r"64x80"),
    # LungSDMPipeline: sampling settings
    api("sdm-steps-0", lambda c: sdm(c, num_inference_steps=0), ValueError, r"between 1 and the scheduler's 1000 .*got 0"),
    api("sdm-steps-1001", lambda c: sdm(c, num_inference_steps=1001), ValueError, r"1000 training steps, got 1001"),
    api("sdm-steps-float", lambda c: sdm(c, num_inference_steps=2.5), TypeError, r"must be an integer, got 2\.5"),
    api("sdm-steps-bool", lambda c: sdm(c, num_inference_steps=True), TypeError, r"must be an integer, got True"),
    api("sdm-steps-string", lambda c: sdm(c, num_inference_steps="10"), TypeError, r"must be an integer, got '10'"),
    api("sdm-guidance-negative", lambda c: sdm(c, guidance_scale=-1.0), ValueError, r"guidance_scale must be >= 0"),
    api("sdm-guidance-nan", lambda c: sdm(c, guidance_scale=float("nan")), ValueError, r"must be finite, got nan"),
    api("sdm-guidance-inf", lambda c: sdm(c, guidance_scale=float("inf")), ValueError, r"must be finite, got inf"),
    api("sdm-guidance-string", lambda c: sdm(c, guidance_scale="1.5"), TypeError, r"must be a number, got '1\.5'"),
    api("sdm-guidance-1e6-warns", lambda c: sdm(c, pipe=fresh_sdm(c), guidance_scale=1e6), UserWarning, r"saturate"),
    api("sdm-output-type-png", lambda c: sdm(c, output_type="png"), ValueError, r"output_type must be one of .*'png'"),
    api("sdm-images-per-map-0", lambda c: sdm(c, num_images_per_prompt=0), ValueError, r"integer >= 1, got 0"),
    api(
        "sdm-generators-too-few",
        lambda c: sdm(c, num_images_per_prompt=2, generator=[torch.Generator()]),
        ValueError,
        r"a list of 1 generators for 2 images",
    ),
    api("sdm-latents-shape", lambda c: sdm(c, latents=torch.zeros(1, 1, 32, 32)), ValueError, r"latents must have shape"),
    api(
        "sdm-latents-nan",
        lambda c: sdm(c, latents=torch.full((1, 1, 64, 64), float("nan"))),
        ValueError,
        r"latents contain NaN or infinite",
    ),
    api(
        "sdm-callback-inputs",
        lambda c: sdm(c, callback_on_step_end_tensor_inputs=["noise"]),
        ValueError,
        r"\['noise'\] are not among",
    ),
    # LungSDMPipeline: schedulers, checked when assigned
    api("sdm-scheduler-string", lambda c: set_scheduler(fresh_sdm(c), "dpm"), TypeError, r"got 'dpm' \(names such as"),
    api(
        "sdm-scheduler-class",
        lambda c: set_scheduler(fresh_sdm(c), type(scheduler("DDIMScheduler"))),
        TypeError,
        r"must be an instance, got the class DDIMScheduler",
    ),
    api("sdm-scheduler-none", lambda c: set_scheduler(fresh_sdm(c), None), TypeError, r"scheduler instance, got None"),
    api("sdm-scheduler-lcm", lambda c: set_scheduler(fresh_sdm(c), scheduler("LCMScheduler")), ValueError, r"LCMScheduler cannot"),
    api(
        "sdm-scheduler-flow-matching",
        lambda c: set_scheduler(fresh_sdm(c), scheduler("FlowMatchEulerDiscreteScheduler")),
        ValueError,
        r"FlowMatchEulerDiscreteScheduler cannot .*use one of",
    ),
    api(
        "sdm-scheduler-learned-variance",
        lambda c: sdm(c, pipe=fresh_sdm(c, scheduler("DDPMScheduler", variance_type="learned"))),
        ValueError,
        r"variance_type='learned' .*'learned_range'",
    ),
    api("sdm-init-scheduler-string", lambda c: LungSDMPipeline(c.sdm.unet, "ddpm"), TypeError, r"got 'ddpm'"),
    api(
        "sdm-hu-window-reversed",
        lambda c: LungSDMPipeline(c.sdm.unet, scheduler("DDPMScheduler"), hu_window=(400, -1000)),
        ValueError,
        r"hu_window must be .* with upper > lower, got \(400, -1000\)",
    ),
    # LungSDMPipeline.from_pretrained
    api(
        "sdm-from-the-priors-folder",
        lambda c: LungSDMPipeline.from_pretrained(PIPELINES / "lung-ddpm-prior-64"),
        ValueError,
        r"is a DDPMPipeline folder.*LungRePaintPipeline\.from_pretrained",
    ),
    api(
        "sdm-from-a-folder-of-pipelines",
        lambda c: LungSDMPipeline.from_pretrained(str(PIPELINES)),
        OSError,
        r"no file named model_index\.json found in directory",
    ),
    api(
        "sdm-from-a-missing-path-object",
        lambda c: LungSDMPipeline.from_pretrained(c.tmp / "nopipe"),
        FileNotFoundError,
        r"nopipe does not exist",
    ),
    api(
        "sdm-from-a-missing-relative-folder",
        lambda c: LungSDMPipeline.from_pretrained("./nopipe"),
        FileNotFoundError,
        r"nopipe does not exist",
    ),
    # LungRePaintPipeline
    api("repaint-image-int16", lambda c: repaint(c, image=SLICE64.astype(np.int16)), TypeError, r"uint8 or float in \[0, 1\], got dtype int16"),
    api("repaint-image-in-hu", lambda c: repaint(c, image=SLICE64 * 10.0 - 1000), ValueError, r"must lie in \[0, 1\] .*image_from_hu"),
    api("repaint-image-nan", lambda c: repaint(c, image=np.full((64, 64), np.nan, np.float32)), ValueError, r"NaN or infinite"),
    api("repaint-mask-keeps-all", lambda c: repaint(c, mask_image=np.ones((64, 64), np.uint8)), ValueError, r"nothing to regenerate"),
    api("repaint-mask-is-a-label-map", lambda c: repaint(c, mask_image=CHEST64), ValueError, r"must hold 0/1 or 0/255"),
    api("repaint-mask-size", lambda c: repaint(c, mask_image=KEEP64[:32, :32]), ValueError, r"mask_image is \(32, 32\) .*\(64, 64\)"),
    api("repaint-map-for-the-prior", lambda c: repaint(c, segmentation=CHEST64), ValueError, r"unconditional .*takes no label map"),
    api(
        "repaint-sdm-without-a-map",
        lambda c: repaint(c, pipe=fresh_repaint(c, c.sdm.unet)),
        ValueError,
        r"pass the \(edited\) label map as segmentation",
    ),
    api(
        "repaint-image-smaller-than-the-model",
        lambda c: repaint(c, image=SLICE64[:32, :32], mask_image=KEEP64[:32, :32]),
        ValueError,
        r"\(32x32\) is smaller than the model's 64x64",
    ),
    api("repaint-jump-too-long", lambda c: repaint(c, jump_length=2, jump_n_sample=2), ValueError, r"jump_length \(2\) must be smaller"),
    api("repaint-eta-negative", lambda c: repaint(c, eta=-1.0), ValueError, r"eta must be a finite number >= 0"),
    api("repaint-size-handling", lambda c: repaint(c, size_handling="stretch"), ValueError, r"size_handling must be one of"),
    api(
        "repaint-latents-inf",
        lambda c: repaint(c, latents=torch.full((1, 1, 64, 64), float("inf"))),
        ValueError,
        r"latents contain NaN or infinite",
    ),
    api(
        "repaint-scheduler-dpm-solver",
        lambda c: set_scheduler(fresh_repaint(c), scheduler("DPMSolverMultistepScheduler")),
        ValueError,
        r"DPMSolverMultistepScheduler cannot run RePaint.*DDIMScheduler, DDPMScheduler, RePaintScheduler",
    ),
    api("repaint-scheduler-string", lambda c: set_scheduler(fresh_repaint(c), "ddim"), TypeError, r"got 'ddim'"),
    # SemanticUNet2DModel: configurations
    api("unet-one-class", lambda c: tiny_sdm(num_classes=1), ValueError, r"num_classes must be at least 2"),
    api("unet-channels-vs-groups", lambda c: tiny_sdm(block_out_channels=(30, 30)), ValueError, r"divisible by norm_num_groups=32"),
    api("unet-attention-factor", lambda c: tiny_sdm(attention_downsample_factors=(8,)), ValueError, r"factors \[8\] are not"),
    api("unet-out-channels", lambda c: tiny_sdm(out_channels=3), ValueError, r"out_channels must be in_channels .*got"),
    api("unet-two-attention-rules", lambda c: tiny_sdm(num_attention_heads=2), ValueError, r"exactly one of attention_head_dim"),
    api("unet-crop-larger-than-slices", lambda c: tiny_sdm(training_crop_size=32), ValueError, r"between 1 and sample_size=16"),
    api("unet-negative-spacing", lambda c: tiny_sdm(pixel_spacing_mm=-1.0), ValueError, r"pixel_spacing_mm must be positive"),
    # SemanticUNet2DModel: forward
    api("unet-sample-3d", lambda c: unet_forward(c, (1, 16, 16)), ValueError, r"sample must have shape \(batch, 1, height"),
    api("unet-no-map", lambda c: unet_forward(c, segmentation=None), ValueError, r"pass either `segmentation` or"),
    api(
        "unet-map-batch",
        lambda c: unet_forward(c, segmentation=torch.zeros(3, 16, 16, dtype=torch.long)),
        ValueError,
        r"segmentation of shape \(3, 16, 16\) does not match",
    ),
    api("unet-timesteps", lambda c: unet_forward(c, (2, 1, 16, 16), torch.tensor([1, 2, 3])), ValueError, r"one entry per image \(2\), got 3"),
    api("unet-odd-size", lambda c: unet_forward(c, (1, 1, 15, 15)), ValueError, r"multiples of 2 .*got 15x15"),
    api("unet-low-res-for-a-plain-sdm", lambda c: unet_forward(c, low_res_sample=torch.zeros(1, 1, 16, 16)), ValueError, r"low_res_channels=0"),
    api("unet-features-type", lambda c: unet_forward(c, segmentation_features={}), TypeError, r"must be the SegmentationFeatures"),
    # Writers of synthetic files
    api("png-not-png", lambda c: save_synthetic_png(np.zeros((8, 8), np.uint8), c.tmp / "x.jpg"), ValueError, r"ending in \.png"),
    api("png-int16", lambda c: save_synthetic_png(np.zeros((8, 8), np.int16), c.tmp / "x.png"), TypeError, r"uint8 or float"),
    api("png-nan", lambda c: save_synthetic_png(np.full((8, 8), np.nan), c.tmp / "x.png"), ValueError, r"NaN or infinite"),
    api("png-a-batch", lambda c: save_synthetic_png(np.zeros((2, 8, 8), np.uint8), c.tmp / "x.png"), ValueError, r"got \(2, 8, 8\)"),
    api("nifti-not-nifti", lambda c: save_synthetic_nifti(np.zeros((8, 8)), c.tmp / "x.png"), ValueError, r"\.nii or \.nii\.gz"),
    api("nifti-nan", lambda c: save_synthetic_nifti(np.full((8, 8), np.nan), c.tmp / "x.nii.gz"), ValueError, r"NaN or infinite"),
    api("nifti-4d", lambda c: save_synthetic_nifti(np.zeros((1, 2, 8, 8)), c.tmp / "x.nii.gz"), ValueError, r"\(N, H, W\), got"),
    api(
        "nifti-zero-spacing",
        lambda c: save_synthetic_nifti(np.zeros((8, 8)), c.tmp / "x.nii.gz", spacing=(0, 1)),
        ValueError,
        r"spacing must hold 2 positive values",
    ),
    api("is-synthetic-missing-file", lambda c: is_synthetic(c.tmp / "nope.png"), FileNotFoundError, r"no such file"),
    # NoduleEdit.save: the rule for output folders
    api("edit-kind", lambda c: nodule_edit("swap"), ValueError, r"kind must be one of"),
    api("edit-save-into-a-users-folder", lambda c: nodule_edit().save(c.files["busy"]), FileExistsError, r"not empty and holds no"),
    api("edit-save-into-a-file", lambda c: nodule_edit().save(c.files["a_file"]), ValueError, r"is a file, not a folder"),
    api("edit-save-twice", save_edit_twice, FileExistsError, r"earlier remove-nodule run; pass --overwrite"),
]
# fmt: on


@pytest.mark.parametrize(("call", "expected", "match"), API_ROWS)
def test_python_api(c, call, expected, match):
    if issubclass(expected, Warning):
        with pytest.warns(expected, match=match):
            call(c)
    else:
        with pytest.raises(expected, match=match):
            call(c)


# ---------------------------------------------------------------------------------------------- command lines


def run_tool(tool: str, argv: list[str]) -> int:
    """A command in this process: its exit status (argparse's SystemExit included)."""
    if tool == "lung-diffusers":
        from lung_diffusers.cli import main
    elif tool == "demo":
        from lung_diffusers.demo import cli as main
    elif tool == "convert_sdm":
        from lung_diffusers.convert_sdm import main
    else:  # the data recipe's script, as ``python dataset_scripts/prepare_luna16.py`` runs it
        return run_script(PREPARE_SCRIPT, argv)
    try:
        return main(argv) or 0
    except SystemExit as exit_info:
        return exit_info.code or 0


def cmd(row_id: str, argv: str, code: int, match: str, marks=()):
    """``argv``: the command as typed, with ``{name}`` for a file of ``ctx`` and ``{out}`` for an output folder
    that must not exist afterwards; ``match``: a regex of the error line."""
    return pytest.param(argv, code, match, id=row_id, marks=marks)


REMOVE = "lung-diffusers remove-nodule --pipeline {prior} --image {slice} --output {out} --steps 2 --jump-length 1"
INSERT = "lung-diffusers insert-nodule --pipeline {sdm} --image {slice} --label-map {labels_healthy} --output {out}"
ANOMALY = "lung-diffusers anomaly-map --pipeline {prior} --image {slice} --output {out} --steps 2"
SYNTHESIZE = "lung-diffusers synthesize --pipeline {sdm} --masks {empty} --num-images 2 --output {out}"
EXPORT = "lung-diffusers export-slice --dataset {empty} --patient LIDC-IDRI-0003 --slice 75 --output {out}"
DEMO = "demo --pipeline {sdm} --output {out} --steps 1 --images-per-mask 1"
CONVERT = "convert_sdm --checkpoint {garbage_pt} --config {config} --output {out}"
RECIPE = "prepare_luna16 --luna16-root {lidc} --output {out}"

# One row per line: a table.
# fmt: off
CLI_ROWS = [
    cmd("no-subcommand", "lung-diffusers", 2, r"the following arguments are required: COMMAND"),
    # remove-nodule
    cmd("remove-output-is-a-file", REMOVE.replace("{out}", "{a_file}") + " --label-map {labels}", 2, r"a_file\.png is a file, not a folder"),
    cmd("remove-output-under-a-file", REMOVE.replace("{out}", "{a_file}/run") + " --label-map {labels}", 2, r"is a file, not a folder"),
    cmd("remove-output-users-folder", REMOVE.replace("{out}", "{busy}") + " --label-map {labels}", 2, r"busy is not empty and holds no"),
    cmd("remove-missing-image", REMOVE.replace("{slice}", "{empty}/slice.png") + " --label-map {labels}", 2, r"no such file or folder: .*slice\.png"),
    cmd("remove-image-not-a-picture", REMOVE.replace("{slice}", "{garbage_pt}") + " --label-map {labels}", 2, r"cannot read .*garbage\.pt: expected a PNG"),
    cmd("remove-image-not-square", REMOVE.replace("{slice}", "{slice_wide}") + " --label-map {labels}", 2, r"square slices only, got 256x320"),
    cmd("remove-slice-index-past-the-end", REMOVE.replace("{slice}", "{volume}") + " --slice-index 3 --label-map {labels}", 2, r"slice index 3 is outside"),
    cmd("remove-map-scaled-x50", REMOVE + " --label-map {labels_x50}", 2, r"got 50, 100, .*divide the map by 50"),
    cmd("remove-map-without-nodule", REMOVE + " --label-map {labels_healthy}", 2, r"has no nodule \(class 5 or 6\)"),
    cmd("remove-map-of-another-size", REMOVE + " --label-map {labels_128}", 2, r"is 128x128; it must match the image"),
    cmd("remove-mask-not-binary", REMOVE + " --nodule-mask {not_binary}", 2, r"is not a binary mask \(values \[0, 1, 2, 3\]\)"),
    cmd("remove-no-nodule-given", REMOVE, 2, r"one of the arguments --nodule-mask --label-map is required"),
    cmd("remove-image-size-negative", REMOVE + " --label-map {labels} --image-size -1", 2, r"--image-size must be 0 \(keep\) or"),
    cmd("remove-samples-0", REMOVE + " --label-map {labels} --samples 0", 2, r"--samples must be at least 1, got 0"),
    cmd("remove-missing-pipeline", REMOVE.replace("{prior}", "./nopipe") + " --label-map {labels}", 2, r"--pipeline \./nopipe: .*nopipe does not exist"),
    cmd("remove-not-a-pipeline", REMOVE.replace("{prior}", "{not_pipeline}") + " --label-map {labels}", 2, r"is not a pipeline folder"),
    cmd("remove-steps-0", REMOVE + " --label-map {labels} --steps 0", 2, r"num_inference_steps must be .*got 0"),
    cmd("remove-steps-not-a-number", REMOVE + " --label-map {labels} --steps many", 2, r"invalid int value: 'many'"),
    cmd("remove-jump-length-0", REMOVE + " --label-map {labels} --jump-length 0", 2, r"jump_length must be an integer >= 1, got 0"),
    cmd("remove-eta-nan", REMOVE + " --label-map {labels} --eta nan", 2, r"eta must be a finite number >= 0 .*got nan"),
    cmd("remove-dilation-negative", REMOVE + " --label-map {labels} --dilation-px -3", 2, r"dilation must be a whole number .*got -3"),
    cmd(
        "remove-device-unknown",
        REMOVE + " --label-map {labels} --device bogus",
        2,
        r"unknown device 'bogus'",
    ),
    # insert-nodule
    cmd("insert-centre-outside", INSERT + " --nodule-center 900 900", 2, r"lies outside the \(256, 256\) slice"),
    cmd("insert-diameter-0", INSERT + " --nodule-center 128 170 --nodule-diameter-px 0", 2, r"must be positive, got 0\.0"),
    cmd("insert-with-the-prior", INSERT.replace("{sdm}", "{prior}") + " --nodule-center 128 170", 2, r"needs a Semantic Diffusion Model"),
    cmd(
        "insert-malignant-map-into-6-classes",
        INSERT.replace("{labels_healthy}", "{labels_malignant}") + " --nodule-center 128 170",
        2,
        r"holds class 6, which this 6-class SDM does not know",
    ),
    cmd("insert-malignancy-into-6-classes", INSERT + " --nodule-center 128 170 --malignancy malignant", 2, r"needs a 7-class malignancy SDM"),
    # anomaly-map
    cmd("anomaly-noise-level-0", ANOMALY + " --noise-level 0", 2, r"noise_level must be a fraction of the chain in \(0, 1\], got 0\.0"),
    cmd("anomaly-noise-level-2", ANOMALY + " --noise-level 2", 2, r"in \(0, 1\], got 2\.0"),
    cmd("anomaly-steps-0", ANOMALY.replace("--steps 2", "--steps 0"), 2, r"num_inference_steps must be .*, got 0"),
    cmd("anomaly-samples-0", ANOMALY + " --samples 0", 2, r"--samples must be at least 1, got 0"),
    cmd("anomaly-scheduler-repaint", ANOMALY + " --scheduler repaint", 2, r"invalid choice: 'repaint'"),
    cmd("anomaly-output-users-folder", ANOMALY.replace("{out}", "{busy}"), 2, r"is not empty and holds no"),
    # synthesize
    cmd("synthesize-num-images-0", SYNTHESIZE.replace("--num-images 2", "--num-images 0"), 2, r"--num-images must be a positive integer, got 0"),
    cmd("synthesize-batch-size-0", SYNTHESIZE + " --batch-size 0", 2, r"--batch-size must be a positive integer, got 0"),
    cmd("synthesize-threads-0", SYNTHESIZE + " --threads 0", 2, r"--threads must be a positive integer, got 0"),
    cmd("synthesize-scheduler", SYNTHESIZE + " --scheduler dpm-turbo", 2, r"unknown scheduler 'dpm-turbo'; choose one of dpm,"),
    cmd("synthesize-guidance-negative", SYNTHESIZE + " --guidance -1", 2, r"--guidance must be a finite number >= 0"),
    cmd("synthesize-guidance-nan", SYNTHESIZE + " --guidance nan", 2, r"--guidance must be a finite number >= 0 .*got nan"),
    cmd("synthesize-nodule-fraction", SYNTHESIZE + " --nodule-fraction 1.5", 2, r"--nodule-fraction must be between 0 and 1"),
    cmd("synthesize-diameters-alone", SYNTHESIZE + " --nodule-diameter-mm 4 8", 2, r"give --nodule-fraction as well"),
    cmd("synthesize-seed-negative", SYNTHESIZE + " --seed -1", 2, r"--seed must be an integer in \[0, 2\*\*63\)"),
    cmd("synthesize-missing-pipeline", SYNTHESIZE.replace("{sdm}", "./nopipe"), 2, r"--pipeline \./nopipe: .*nopipe does not exist"),
    cmd("synthesize-unknown-hub-repo", SYNTHESIZE.replace("{sdm}", "someone/no-such-sdm"), 2, r"neither a local folder nor a reachable Hub repo"),
    cmd("synthesize-missing-masks", SYNTHESIZE.replace("{empty}", "./missing"), 2, r"--masks \./missing: .*missing does not exist"),
    cmd("synthesize-masks-not-a-dataset", SYNTHESIZE, 2, r"cannot open the mask dataset .*doesn't contain any data files"),
    # export-slice
    cmd("export-missing-dataset", EXPORT.replace("{empty}", "./missing"), 2, r"the dataset missing does not exist; give the folder"),
    cmd("export-not-a-dataset", EXPORT, 2, r"empty is not a datasets folder"),
    cmd("export-slice-negative", EXPORT + " --slice -1", 2, r"--slice must be a slice index >= 0"),
    cmd("export-no-scan", EXPORT.replace("--patient LIDC-IDRI-0003 ", ""), 2, r"one of the arguments --series --patient is required"),
    # the demo
    cmd("demo-steps-0", DEMO.replace("--steps 1", "--steps 0"), 2, r"--steps and --images-per-mask must be at least 1"),
    cmd("demo-no-masks", DEMO + " --masks {empty}", 2, r"no label-map PNGs in"),
    cmd("demo-output-users-folder", DEMO.replace("{out}", "{busy}"), 2, r"busy is not empty and holds no"),
    cmd("demo-scheduler", DEMO + " --scheduler lcm", 2, r"invalid choice: 'lcm'"),
    cmd("demo-the-priors-folder", DEMO.replace("{sdm}", "{prior}") + " --masks {sdm}/example_masks", 2, r"is a DDPMPipeline folder"),
    cmd(
        "demo-missing-pipeline",
        DEMO.replace("{sdm}", "{empty}/nopipe"),
        2,
        r"nopipe does not exist",
    ),
    cmd(
        "demo-guidance-negative",
        DEMO + " --guidance -1",
        2,
        r"--guidance must be a finite number >= 0",
    ),
    # convert_sdm
    cmd("convert-missing-checkpoint", CONVERT.replace("{garbage_pt}", "{empty}/model.pt"), 2, r"checkpoint not found"),
    cmd("convert-checkpoint-not-weights", CONVERT, 2, r"could not read .*garbage\.pt as a weights-only torch checkpoint"),
    cmd("convert-config-not-json", CONVERT.replace("{config}", "{not_json}"), 2, r"cannot read config .*not-json\.json"),
    cmd("convert-output-is-a-file", CONVERT.replace("{out}", "{a_file}"), 2, r"is a file, not a folder"),
    cmd("convert-output-users-folder", CONVERT.replace("{out}", "{busy}"), 2, r"is not empty; pass --overwrite"),
    # the data recipe (dataset_scripts/prepare_luna16.py)
    cmd("recipe-missing-root", RECIPE.replace("{lidc}", "{empty}/luna16"), 2, r"LUNA16 folder not found: .*luna16"),
    cmd("recipe-root-without-scans", RECIPE.replace("{lidc}", "{empty}"), 2, r"no LUNA16 scans under .*subset0/<seriesuid>\.mhd"),
    cmd("recipe-output-is-a-file", RECIPE.replace("{out}", "{a_file}"), 2, r"is a file, not a folder; give a new or empty folder"),
    cmd("recipe-image-size-4", RECIPE + " --image-size 4", 2, r"image_size must be between 8 and 2048 pixels, got 4"),
    cmd("recipe-image-size-0", RECIPE + " --image-size 0", 2, r"image_size must be between 8 and 2048 pixels, got 0"),
    cmd("recipe-image-size-text", RECIPE + " --image-size big", 2, r"invalid int value: 'big'"),
    cmd("recipe-test-fraction-1", RECIPE + " --test-fraction 1", 2, r"test_fraction must be at least 0 and below 1, got 1\.0"),
    cmd("recipe-unknown-series", RECIPE + " --series-uid 1.2.3", 2, r"series not found under .*: 1\.2\.3"),
    cmd("recipe-workers-0", RECIPE + " --num-workers 0", 2, r"num_workers must be at least 1, got 0"),
    cmd("recipe-missing-lung-masks", RECIPE + " --lung-masks {empty}/seg-lungs", 2, r"lung mask folder not found"),
    cmd("recipe-missing-annotations", RECIPE + " --annotations {empty}/annotations.csv", 2, r"annotation file not found"),
]
# fmt: on


@pytest.mark.parametrize(("argv", "code", "match"), CLI_ROWS)
def test_command_line(c, capsys, monkeypatch, argv, code, match):
    monkeypatch.delenv("LUNG_DIFFUSERS_DEBUG", raising=False)  # a user's setting would add the traceback
    out = c.tmp / "out"
    tool, *args = argv.split()
    assert run_tool(tool, [a.format(out=out, **c.files) for a in args]) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    if not err.startswith("usage:"):  # argparse's own errors follow the usage lines
        assert len(lines) == 1, err
    assert re.search(match, lines[-1]), err
    assert not out.exists(), f"a refused command created its --output: {sorted(p.name for p in out.iterdir())}"


# ---------------------------------------------------------------------------------------------- the Space


def uploads():
    from lung_space import uploads as module

    return module


def painting():
    from lung_space import mask_painting as module

    return module


def upload_png(c, name: str, array) -> str:
    """A file as the Space gets an upload: a path in a temporary folder."""
    return write_png(c.tmp / name, array)


def upload_text(c, name: str) -> str:
    (c.tmp / name).write_text("not an image")
    return str(c.tmp / name)


def space(row_id: str, call, expected: type[BaseException], match: str):
    return pytest.param(call, expected, match, id=row_id)


# One row per line: a table.
# fmt: off
SPACE_ROWS = [
    # Uploaded label maps (Draw & generate)
    space("label-map-jpeg", lambda c: uploads().read_label_map(c.tmp / "mask.jpg", 6, 64), ValueError, r"mask\.jpg is not a PNG"),
    space("label-map-not-an-image", lambda c: uploads().read_label_map(upload_text(c, "m.png"), 6, 64), ValueError, r"could not be read as a PNG"),
    space(
        "label-map-scaled-x50",
        lambda c: uploads().read_label_map(upload_png(c, "m.png", CHEST64 * 50), 6, 64),
        ValueError,
        r"holds label value\(s\) \[50, 100, 150, 250\], but this model knows classes 0-5",
    ),
    space(
        "label-map-malignant",
        lambda c: uploads().read_label_map(upload_png(c, "m.png", np.where(CHEST64 == 5, 6, CHEST64)), 6, 64),
        ValueError,
        r"6 = malignant nodule needs a 7-class model",
    ),
    space("label-map-not-square", lambda c: uploads().read_label_map(upload_png(c, "m.png", CHEST64[:, :48]), 6, 64), ValueError, r"48x64 px; label maps must be square"),
    space("label-map-too-small", lambda c: uploads().read_label_map(upload_png(c, "m.png", chest(32)), 6, 64), ValueError, r"smaller than the model's 64x64"),
    # Uploaded real slices and nodule masks (Edit a real slice)
    space("slice-none", lambda c: uploads().read_real_slice([]), ValueError, r"upload a real slice first"),
    space("slice-index-negative", lambda c: uploads().read_real_slice(c.files["slice"], -1), ValueError, r"whole number >= 0, got -1"),
    space("slice-index-fraction", lambda c: uploads().read_real_slice(c.files["slice"], 2.5), ValueError, r"whole number >= 0, got 2\.5"),
    space(
        "slice-mixed-files",
        lambda c: uploads().read_real_slice([c.files["slice"], c.files["labels"]]),
        ValueError,
        r"upload only \.dcm files, or a single file",
    ),
    space("slice-not-an-image", lambda c: uploads().read_real_slice(upload_text(c, "s.png")), ValueError, r"s\.png could not be read as an image"),
    space("slice-not-square", lambda c: uploads().read_real_slice(c.files["slice_wide"]), ValueError, r"320x256 px; the Space works on square"),
    space("slice-tiny", lambda c: uploads().read_real_slice(upload_png(c, "s.png", SLICE64[:32, :32])), ValueError, r"only 32x32 px"),
    space("slice-volume-without-index", lambda c: uploads().read_real_slice(c.files["volume"]), ValueError, r"holds 3 slices: give a slice index"),
    space("slice-index-past-the-end", lambda c: uploads().read_real_slice(c.files["volume"], 3), ValueError, r"slice index 3 is outside"),
    space("nodule-mask-empty", lambda c: uploads().read_nodule_mask(upload_png(c, "n.png", np.zeros((256, 256))), None), ValueError, r"marks no nodule"),
    space(
        "nodule-mask-not-square",
        lambda c: uploads().read_nodule_mask(upload_png(c, "n.png", np.ones((256, 200))), None),
        ValueError,
        r"200x256 px; the nodule mask must be square",
    ),
    # Painting and placing nodules
    space("painted-not-square", lambda c: painting().painted_labels(np.zeros((320, 256, 3), np.uint8), 6, 64), ValueError, r"must be a square 64 px picture"),
    space("painted-cropped", lambda c: painting().painted_labels(np.zeros((100, 100, 3), np.uint8), 6, 64), ValueError, r"or a whole multiple of it"),
    space("painted-grey", lambda c: painting().rgb_to_classes(np.zeros((64, 64), np.uint8), 6), ValueError, r"expected a colour picture"),
    space("palette-5-classes", lambda c: painting().palette(5), ValueError, r"6- or 7-class label maps"),
    space("nodule-diameter-0", lambda c: painting().place_nodule(CHEST64, (32, 44), 0.0, (1, 1), 5), ValueError, r"positive number of mm, got 0\.0"),
    space("nodule-diameter-nan", lambda c: painting().place_nodule(CHEST64, (32, 44), float("nan"), (1, 1), 5), ValueError, r"got nan"),
    space("nodule-spacing-0", lambda c: painting().place_nodule(CHEST64, (32, 44), 6.0, (0, 0), 5), ValueError, r"pixel spacing must be positive"),
    space("nodule-centre-outside", lambda c: painting().place_nodule(CHEST64, (80, 10), 6.0, (1, 1), 5), ValueError, r"lies outside the 64x64 mask"),
    space("nodule-on-background", lambda c: painting().place_nodule(CHEST64, (0, 0), 6.0, (1, 1), 5), ValueError, r"that point is background"),
]
# fmt: on


@pytest.mark.parametrize(("call", "expected", "match"), SPACE_ROWS)
def test_space_uploads_and_painting(c, call, expected, match):
    with pytest.raises(expected, match=match):
        call(c)


@pytest.fixture(scope="module")
def handlers(ctx):
    """The Space's handlers around its model service (the bundled pipelines), as the app wires them up."""
    from lung_space.handlers import SpaceHandlers
    from lung_space.model_service import get_service

    return SpaceHandlers(get_service())


def editor(h, labels=CHEST64):
    """The mask editor's value at the mask's own size (the app shows it enlarged, which only costs time here)."""
    return {"background": None, "layers": [], "composite": painting().labels_to_rgb(labels, h.num_classes)}


def real_slice(h, c):
    return h.load_real_slice([c.files["slice"]], None)[0]


def generate(h, c, mask=None, scheduler="DDIM", steps=1, guidance=1.0, seed=0, images=1, pixel_mm=None):
    return h.generate(editor(h) if mask is None else mask, scheduler, steps, guidance, seed, images, pixel_mm)


def remove(h, c, source="painted", mask_file=None, labels_file=None, settings="quick", value=None):
    value = real_slice(h, c) if value is None else value
    return h.remove(value, source, mask_file, labels_file, None, 1.0, settings, 0, 1)


def insert(h, c, labels_file=None, centre="128, 170", diameter=6.0):
    return h.insert(real_slice(h, c), labels_file, None, centre, 1.0, diameter, "benign", "quick", 0)


# One row per line: a table.
# fmt: off
HANDLER_ROWS = [
    space("generate-no-mask", lambda h, c: generate(h, c, mask={"composite": None}), ValueError, r"there is no mask yet"),
    space("generate-cropped-mask", lambda h, c: generate(h, c, mask={"composite": np.zeros((100, 100, 3), np.uint8)}), ValueError, r"the painted mask is 100x100"),
    space("generate-steps-0", lambda h, c: generate(h, c, steps=0), ValueError, r"steps must be a whole number from 1 to 1000, got 0"),
    space("generate-steps-text", lambda h, c: generate(h, c, steps="ten"), ValueError, r"got 'ten'"),
    space("generate-guidance-100", lambda h, c: generate(h, c, guidance=100), ValueError, r"guidance scale must be a number from 0 to 10"),
    space("generate-seed-negative", lambda h, c: generate(h, c, seed=-1), ValueError, r"seed must be a whole number"),
    space("generate-99-images", lambda h, c: generate(h, c, images=99), ValueError, r"number of images must be a whole number from 1 to 4"),
    space("generate-unknown-scheduler", lambda h, c: generate(h, c, scheduler="LCM"), ValueError, r"unknown scheduler 'LCM'"),
    space("generate-spacing-absurd", lambda h, c: generate(h, c, pixel_mm=500), ValueError, r"pixel spacing must be 0\.05-50 mm"),
    space("compare-steps-text", lambda h, c: h.compare(editor(h), ["DDIM"], "10, many", 0, 1.0), ValueError, r"step counts must be whole numbers"),
    space("compare-no-scheduler", lambda h, c: h.compare(editor(h), [], "10", 0, 1.0), ValueError, r"tick at least one scheduler"),
    space(
        "compare-too-many-runs",
        lambda h, c: h.compare(editor(h), ["DDIM", "DDPM", "UniPC"], "1, 2, 3, 4, 5", 0, 1.0),
        ValueError,
        r"15 runs asked for; compare at most 12",
    ),
    space("example-unknown", lambda h, c: h.load_example("lungs"), ValueError, r"unknown example 'lungs'"),
    space("load-label-map-none", lambda h, c: h.load_label_map(None), ValueError, r"choose a label-map PNG to load"),
    space("real-slice-index-negative", lambda h, c: h.load_real_slice([c.files["slice"]], -1), ValueError, r"whole number >= 0"),
    space("remove-no-slice", lambda h, c: remove(h, c, value={"background": None}), ValueError, r"load a real slice first"),
    space("remove-nothing-painted", lambda h, c: remove(h, c), ValueError, r"paint over the nodule on the slice first"),
    space(
        "remove-labels-without-nodule",
        lambda h, c: remove(h, c, "label map (classes 5/6)", labels_file=c.files["labels_healthy"]),
        ValueError,
        r"the label map has no nodule \(class 5 or 6\) on this slice",
    ),
    space("remove-no-mask-file", lambda h, c: remove(h, c, "mask file"), ValueError, r"upload a nodule mask file"),
    space("remove-unknown-source", lambda h, c: remove(h, c, "guess"), ValueError, r"unknown nodule mask source 'guess'"),
    space(
        "remove-unknown-settings",
        lambda h, c: remove(h, c, "label map (classes 5/6)", labels_file=c.files["labels"], settings="fast"),
        ValueError,
        r"unknown RePaint setting 'fast'",
    ),
    space("insert-without-labels", lambda h, c: insert(h, c), ValueError, r"inserting needs the slice's label map"),
    space("insert-centre-text", lambda h, c: insert(h, c, c.files["labels_healthy"], "middle"), ValueError, r"click on the slice where"),
    space("insert-diameter-0", lambda h, c: insert(h, c, c.files["labels_healthy"], diameter=0.0), ValueError, r"positive number of mm"),
]
# fmt: on


@pytest.mark.parametrize(("call", "expected", "match"), HANDLER_ROWS)
def test_space_handlers(handlers, c, call, expected, match):
    """Through ``readable_errors``, as the app wires every handler: a one-line ``gr.Error`` the UI shows."""
    import gradio as gr
    from lung_space.handlers import readable_errors

    with pytest.raises(gr.Error) as error:
        readable_errors(lambda: call(handlers, c))()
    message = error.value.message
    assert isinstance(error.value.__context__, expected) and re.search(match, message), message
    assert "\n" not in message
