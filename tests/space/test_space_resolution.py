"""The Space's resolution choice: with a cascade's second stage loaded, Synthesise also draws full-resolution
slices through both stages, shows the expected time and keeps a request within the time budget.

Tiny random models stand in for the demo's (a 32-px SDM and a 64-px second stage: the same 1:2 layout of display
and mask as 64 and 256 px); handlers and the model service run in-process, without a server.
"""

import json
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
from lung_space import display, model_service
from lung_space.model_service import REQUEST_BUDGET_S, ModelService, StageTiming
from lung_support import tiny_sdm, tiny_upscaler

from lung_diffusers import is_synthetic

gr = pytest.importorskip("gradio")

LOW, FULL = 32, 64
EXAMPLE_PIXEL_MM = 1.4  # the full-resolution example's spacing (the recipe's 256-px slices: 1.36-1.64 mm)


def chest(side: int) -> np.ndarray:
    labels = np.zeros((side, side), np.uint8)
    s = side // 16
    labels[s : 15 * s, s : 15 * s] = 1
    labels[3 * s : 12 * s, 2 * s : 7 * s] = 3
    labels[3 * s : 12 * s, 9 * s : 14 * s] = 2
    return labels


def save_models(folder):
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline, LungSDMUpscalePipeline

    def schedule():
        return DDPMScheduler(variance_type="learned_range", clip_sample=True)

    LungSDMPipeline(tiny_sdm(LOW), schedule()).save_pretrained(folder / "sdm")
    LungSDMUpscalePipeline(tiny_upscaler(FULL, training_crop_size=LOW), schedule(), schedule()).save_pretrained(
        folder / "upscaler"
    )
    examples = folder / "upscaler" / "example_masks"
    examples.mkdir()
    PIL.Image.fromarray(chest(FULL)).save(examples / "chest.png")
    (examples / "examples.json").write_text(json.dumps({"chest.png": {"pixel_mm": [EXAMPLE_PIXEL_MM] * 2}}))
    return folder / "sdm", folder / "upscaler"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return save_models(tmp_path_factory.mktemp("space-cascade"))


@pytest.fixture(scope="module")
def service(folders):
    return ModelService(str(folders[0]), None, str(folders[1]))


@pytest.fixture(scope="module")
def handlers(service):
    from lung_space.handlers import SpaceHandlers

    return SpaceHandlers(service)


@pytest.fixture
def timed(service, monkeypatch):
    """The service with a known timing: 0.1 s per first-stage pass, 2.5 s per second-stage pass (1 s per stage-2
    step asked for: at the default strength 0.4 it runs 8 of 20, 10 of 25), no fixed part."""
    monkeypatch.setattr(service, "timing", {LOW: StageTiming(0.0, 0.1), FULL: StageTiming(0.0, 2.5)})
    return service


def editor(labels: np.ndarray) -> dict:
    from lung_space.handlers import editor_value

    return editor_value(display.mask_view(labels, 6))


def test_the_second_stage_adds_a_resolution_its_examples_and_a_warm_up_timing(service, handlers, folders, monkeypatch):
    assert service.sizes == (LOW, FULL) and handlers.resolutions == {"32 px": LOW, "64 px": FULL}
    assert all(t.per_pass > 0 and t.fixed >= 0 for t in (service.timing[LOW], service.timing[FULL]))
    labels, spacing = handlers.initial_mask("chest (64 px)")
    assert labels.shape == (FULL, FULL) and spacing == pytest.approx(EXAMPLE_PIXEL_MM * FULL / LOW)  # the field's 32-px spacing
    with pytest.raises(ValueError, match="the label map is 48x48, the model needs 32x32 or 64x64"):
        service.synthesise(np.zeros((48, 48), np.uint8), "DDIM", 2, 1.0, 0, 1)
    with pytest.raises(ValueError, match="unknown resolution '128 px'; choose one of 32 px, 64 px"):
        handlers.side("128 px")

    # Found like the other models: the environment, else pipelines/lung-sdm-upscaler-256 (absent here: 64 px only).
    # Stage 2 is timed over its whole chain (strength 1): 1 + 3 steps are 4 passes, as the timing assumes (at the
    # default strength both calls would run one).
    passes = []
    forward = service.upscaler.unet.forward
    monkeypatch.setattr(service.upscaler.unet, "forward", lambda *a, **k: passes.append(1) or forward(*a, **k))
    monkeypatch.setattr(service, "timing", {})
    service.warm_up()
    assert len(passes) == 1 + 1 + 3 and set(service.timing) == {LOW, FULL}
    monkeypatch.undo()

    monkeypatch.setenv(model_service.UPSCALER_ENV, str(folders[1]))
    assert model_service.optional_pipeline(model_service.UPSCALER_ENV, model_service.UPSCALER_FOLDER) == str(folders[1])
    monkeypatch.delenv(model_service.UPSCALER_ENV)
    monkeypatch.setattr(model_service, "APP_DIR", folders[0])
    assert model_service.optional_pipeline(model_service.UPSCALER_ENV, model_service.UPSCALER_FOLDER) is None


def test_full_resolution_slices_come_through_both_stages_stamped_and_marked(handlers, service):
    import SimpleITK as sitk

    spacing = 2.8  # mm per pixel of the 32-px mask
    gallery, overlay, files, status = handlers.generate(
        editor(chest(FULL)), "DDIM", 2, 1.0, 4, 2, spacing, "64 px", 3
    )
    assert [caption for _, caption in gallery] == [
        "SYNTHETIC · 64 px · DDIM · 2 + 3 steps · seed 4",
        "SYNTHETIC · 64 px · DDIM · 2 + 3 steps · seed 5",
    ]
    for picture in [*(p for p, _ in gallery), overlay]:  # marked as the 32-px ones are
        assert picture.shape == (512 + display.banner_height(512), 512, 3)
        np.testing.assert_array_equal(display.stamp_region(picture), display.synthetic_banner(512))
    assert "2 synthetic slice(s) at 64 px" in status and "DDIM, 2 + 3 steps" in status
    assert "then stage 2 from its image upsampled and noised: strength 0.4, the last 1 of its 3 steps)" in status
    pngs = sorted(f for f in files if f.endswith(".png"))
    assert [f.rsplit("/", 1)[1] for f in pngs] == ["synthetic_64px_ddim_2+3steps_seed4.png", "synthetic_64px_ddim_2+3steps_seed5.png"]
    for path in files:
        assert is_synthetic(path)
    with PIL.Image.open(pngs[0]) as image:
        assert image.size == (FULL, FULL) and image.info["upscaler_steps"] == "3"
        assert image.info["upscaler_strength"] == "0.4"
    nifti = sitk.ReadImage(next(f for f in files if f.endswith("seed4.nii.gz")))
    assert nifti.GetSpacing() == pytest.approx((spacing * LOW / FULL,) * 2)  # the full-resolution pixels' own

    # The images are the cascade's: the same seeds through LungSDMCombinedPipeline give them again.
    import torch

    result = service.synthesise(chest(FULL), "DDIM", 2, 1.0, 4, 2, upscaler_steps=3)
    direct = service.cascade_pipeline("DDIM")(
        chest(FULL), num_inference_steps=2, upscaler_num_inference_steps=3, num_images_per_prompt=2,
        generator=[torch.Generator().manual_seed(s) for s in (4, 5)], output_type="hu",
    ).images  # fmt: skip
    np.testing.assert_array_equal(result.hu, direct)
    assert (result.upscaler_steps, result.upscaler_strength) == (3, 0.4) and result.grey.shape == (2, FULL, FULL)

    # The SDM's own size is unchanged: no stage 2, captions and files as before.
    gallery, _, files, status = handlers.generate(editor(chest(LOW)), "DDIM", 2, 1.0, 0, 1, spacing)
    assert gallery[0][1] == "SYNTHETIC · DDIM · 2 steps · seed 0" and status.startswith("1 synthetic slice(s) with DDIM, 2 steps")
    assert sorted(f.rsplit("/", 1)[1] for f in files) == ["synthetic_ddim_2steps_seed0.nii.gz", "synthetic_ddim_2steps_seed0.png"]


def test_expected_time_and_step_limits_keep_a_full_resolution_request_within_the_budget(timed, handlers):
    # 20 + 20 DDIM steps: 20 x 0.1 s + 8 x 2.5 s per image (stage 2 runs the last 8 of its 20 steps); guidance
    # doubles the passes; Heun takes 2n - 1 per stage (stage 2: of its 8 steps).
    assert timed.expected_seconds(FULL, "DDIM", 20, 1.0, 1, 20) == pytest.approx(22.0)
    assert timed.expected_seconds(FULL, "DDIM", 20, 1.5, 2, 20) == pytest.approx(88.0)
    assert timed.expected_seconds(FULL, "Heun", 20, 1.0, 1, 20) == pytest.approx(39 * 0.1 + 15 * 2.5)
    assert timed.expected_seconds(LOW, "DDIM", 20, 1.0, 3) == pytest.approx(6.0)
    # 4 images with 25 stage-2 steps leave 20 s: 50 first-stage steps. The SDM's own size keeps its range.
    assert timed.max_steps(FULL, "DDIM", 1.0, 4, 25) == 50
    assert timed.max_steps(FULL, "DDIM", 1.5, 4, 25) == 0
    assert timed.max_steps(LOW, "DDIM", 1.5, 4) == model_service.MAX_SLIDER_STEPS

    assert handlers.expected_time("64 px", "DDIM", 20, 1.0, 1, 20) == (
        "Expected: about 22 s per image (a 64-px request may take about 120 s: at most 250 steps here)."
    )
    assert handlers.expected_time("64 px", "DDIM", 60, 1.0, 4, 25) == (
        "Expected: about 31 s per image, about 124 s for 4: over the 120 s a 64-px request may take; use at most 50 steps."
    )
    assert handlers.expected_time("32 px", "DDIM", 20, 1.0, 2, 25) == "Expected: about 2 s per image, about 4 s for 2."
    assert handlers.step_limits("64 px", "DDIM", 1.0, 4, 25, 60) == gr.update(maximum=50, value=50)
    assert handlers.step_limits("32 px", "DDIM", 1.0, 4, 25, 60) == gr.update(maximum=250, value=60)
    assert handlers.show_stage_two("64 px") == gr.update(visible=True)
    assert handlers.show_stage_two("32 px") == gr.update(visible=False)
    # Switching size resets Scheduler and Steps to that size's default: the cascade's at full resolution.
    assert handlers.sampler_defaults("64 px") == (gr.update(value="DPM-Solver++"), gr.update(value=25))
    assert handlers.sampler_defaults("32 px") == (gr.update(value="DDPM"), gr.update(value=100))

    labels = chest(FULL)
    with pytest.raises(ValueError, match=r"about 124 s here; one request may take about 120 s: use at most 50 steps"):
        timed.synthesise(labels, "DDIM", 60, 1.0, 0, 4, upscaler_steps=25)
    with pytest.raises(ValueError, match="ask for fewer images or stage-2 steps"):
        timed.synthesise(labels, "DDIM", 1, 1.5, 0, 4, upscaler_steps=25)
    with pytest.raises(ValueError, match="stage-2 steps must be a whole number from 1 to 25"):
        timed.synthesise(labels, "DDIM", 1, 1.0, 0, 1, upscaler_steps=26)
    assert REQUEST_BUDGET_S == 120.0


def test_a_nodule_placed_at_full_resolution_is_sized_in_its_pixels(handlers):
    labels = chest(FULL)
    click = SimpleNamespace(index=(45 * 8 + 4, 30 * 8 + 4))  # display pixel (x, y): row 30, column 45 (left lung)
    value, _, message = handlers.place_nodule(editor(labels), 2.8, 7.0, "malignant", click, "64 px")
    assert "5.0 px across at 1.4 mm per pixel" in message  # 7 mm at 64 px: 5 pixels, not 2.5 as at 32 px
    placed = handlers.labels_from_editor(value, FULL)
    assert placed.shape == (FULL, FULL) and 15 <= (placed == 5).sum() <= 25 and placed[30, 45] == 5


def test_the_app_offers_the_resolution_and_its_expected_time(service):
    from lung_space.layout import build_app

    config = build_app(service).get_config_file()
    components = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
    assert components["resolution"]["visible"] is True
    assert [choice[0] for choice in components["resolution"]["choices"]] == ["32 px", "64 px"]
    assert components["resolution"]["value"] == "32 px"  # the SDM's own size stays the default
    assert components["expected-time"]["value"].startswith("Expected:")
    assert components["upscaler-steps"]["maximum"] == model_service.MAX_UPSCALER_STEPS


def test_the_bundle_takes_the_second_stage_when_there_is_one(tmp_path):
    from make_bundle import OPTIONAL_PIPELINES, PIPELINES, build_bundle

    root = tmp_path / "pipelines"
    for name in (*PIPELINES, *OPTIONAL_PIPELINES):
        (root / name).mkdir(parents=True)
        (root / name / "model_index.json").write_text("{}")
    bundle = build_bundle(tmp_path / "with", root)
    assert (bundle / "pipelines" / "lung-sdm-upscaler-256" / "model_index.json").is_file()
    (root / "lung-sdm-upscaler-256" / "model_index.json").unlink()
    assert not (build_bundle(tmp_path / "without", root) / "pipelines" / "lung-sdm-upscaler-256").exists()
