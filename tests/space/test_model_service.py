"""The model service in-process: loaded once, one scheduler per request, absurd settings refused in words."""

import math
import threading

import numpy as np
import pytest
from lung_space import model_service
from lung_space.model_service import get_service, write_synthesis
from space_support import PIPELINES

from lung_diffusers import is_synthetic

STEPS = 4  # the 64-px model takes ~0.05-0.3 s a step; four show every scheduler's path


@pytest.fixture(scope="module")
def service():
    if not (PIPELINES / "lung-sdm-64" / "model_index.json").is_file():
        pytest.fail(f"the demo pipelines are missing from {PIPELINES}")
    return get_service()


@pytest.fixture(scope="module")
def mask(service):
    return service.examples["nodule"][0]


def test_the_models_load_once_per_process(space_dependencies, monkeypatch, service, mask):
    import gradio as gr
    from lung_space.layout import build_app

    loads = []
    for cls in (model_service.LungSDMPipeline, model_service.LungRePaintPipeline):
        original = cls.from_pretrained.__func__
        monkeypatch.setattr(
            cls, "from_pretrained", classmethod(lambda c, *a, _o=original, **k: loads.append(a) or _o(c, *a, **k))
        )
    assert get_service() is service
    demo = build_app()
    assert isinstance(demo, gr.Blocks)
    service.synthesise(mask, "DDIM", STEPS, 1.0, 0, 1)
    service.synthesise(mask, "UniPC", STEPS, 1.0, 0, 1)
    assert get_service() is service and loads == []  # the app and every request reuse the loaded weights


def test_each_request_gets_its_own_scheduler_around_the_shared_unet(service):
    first, second = service.sdm_pipeline("DDIM"), service.sdm_pipeline("DDIM")
    assert first.unet is second.unet is service.sdm.unet
    assert first.scheduler is not second.scheduler and first.scheduler is not service.sdm.scheduler


def test_concurrent_requests_do_not_disturb_each_other(service, mask):
    """Two users sampling at once (the queue runs up to LUNG_SPACE_CONCURRENCY jobs in threads) get exactly
    what each would get alone."""
    alone = {name: service.synthesise(mask, name, STEPS, 1.0, 3, 1).grey for name in ("DDIM", "DPM-Solver++")}
    together = {}

    def run(name):
        together[name] = service.synthesise(mask, name, STEPS, 1.0, 3, 1).grey

    threads = [threading.Thread(target=run, args=(name,)) for name in alone]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in alone:
        np.testing.assert_array_equal(together[name], alone[name])


def test_seeds_reproduce_and_schedulers_differ(service, mask):
    first = service.synthesise(mask, "DPM-Solver++", STEPS, 1.0, 7, 2)
    again = service.synthesise(mask, "DPM-Solver++", STEPS, 1.0, 7, 2)
    other = service.synthesise(mask, "DDIM", STEPS, 1.0, 7, 2)
    assert first.grey.shape == (2, 64, 64) and first.grey.dtype == np.uint8 and first.seeds == [7, 8]
    np.testing.assert_array_equal(first.grey, again.grey)
    assert not np.array_equal(first.grey, other.grey)
    assert not np.array_equal(first.grey[0], first.grey[1])


@pytest.mark.parametrize("name", list(model_service.SCHEDULERS))
def test_every_offered_scheduler_samples(service, mask, name):
    result = service.synthesise(mask, name, 2, 1.5, 0, 1)
    assert np.isfinite(result.hu).all() and result.grey.std() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps must be a whole number from 1 to 1000"),
        ({"steps": 10**6}, "from 1 to 1000"),
        ({"steps": 2.5}, "whole number"),
        ({"guidance": -1}, "guidance scale must be a number from 0 to 10"),
        ({"guidance": math.nan}, "guidance scale"),
        ({"seed": -1}, "seed must be"),
        ({"seed": "abc"}, "seed must be"),
        ({"num_images": 9}, "number of images must be a whole number from 1 to 4"),
        ({"scheduler": "PNDM"}, "unknown scheduler 'PNDM'"),
    ],
)
def test_absurd_settings_are_refused_in_words(service, mask, kwargs, message):
    settings = {"scheduler": "DDIM", "steps": 2, "guidance": 1.0, "seed": 0, "num_images": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        service.synthesise(mask, **settings)


def test_label_maps_the_model_cannot_take_are_refused(service):
    with pytest.raises(ValueError, match="needs 64x64"):
        service.synthesise(np.zeros((32, 32), np.uint8), "DDIM", 2, 1.0, 0, 1)
    with pytest.raises(ValueError, match="knows 0-5"):
        service.synthesise(np.full((64, 64), 6, np.uint8), "DDIM", 2, 1.0, 0, 1)


def test_compare_reports_time_and_lung_dice_per_run(service, mask):
    runs = service.compare(mask, ["DDIM", "UniPC"], [2, 3], 0, 1.0)
    assert [(r.scheduler, r.steps) for r in runs] == [("DDIM", 2), ("DDIM", 3), ("UniPC", 2), ("UniPC", 3)]
    assert all(r.seconds > 0 and 0 <= r.dice <= 1 and r.grey.shape == (64, 64) for r in runs)
    blank = service.compare(np.zeros((64, 64), np.uint8), ["DDIM"], [2], 0, 1.0)
    assert math.isnan(blank[0].dice)  # no lung in the mask: Dice is undefined, not 0


@pytest.mark.parametrize(
    "schedulers, steps, message",
    [
        ([], [10], "tick at least one scheduler"),
        (["DDIM"], [], "at least one step count"),
        (list(model_service.SCHEDULERS), [1, 2], "compare at most 12"),
        (["DDIM", "DDPM"], [1000], "keep a comparison under 1500"),
    ],
)
def test_compare_refuses_empty_or_oversized_requests(service, mask, schedulers, steps, message):
    with pytest.raises(ValueError, match=message):
        service.compare(mask, schedulers, steps, 0, 1.0)


def test_downloads_are_png_and_nifti_marked_synthetic(service, mask):
    import SimpleITK as sitk

    result = service.synthesise(mask, "DDIM", 2, 1.0, 5, 2)
    written = write_synthesis(result, 5.625, "pipelines/lung-sdm-64")
    assert sorted(p.name for p in written) == [
        "synthetic_ddim_2steps_seed5.nii.gz",
        "synthetic_ddim_2steps_seed5.png",
        "synthetic_ddim_2steps_seed6.nii.gz",
        "synthetic_ddim_2steps_seed6.png",
    ]
    assert all(is_synthetic(p) for p in written)
    nifti = sitk.ReadImage(str(next(p for p in written if p.name.endswith("seed5.nii.gz"))))
    assert nifti.GetSpacing() == (5.625, 5.625)
    np.testing.assert_allclose(sitk.GetArrayFromImage(nifti), result.hu[0])


def test_handler_errors_become_one_line_messages(space_dependencies):
    import gradio as gr
    from lung_space.handlers import readable_errors

    def bad_input():
        raise ValueError("the slice index must be a whole number >= 0, got -1")

    def bug():
        return {}["missing"]

    with pytest.raises(gr.Error) as error:
        readable_errors(bad_input)()
    assert error.value.message == "the slice index must be a whole number >= 0, got -1"
    with pytest.raises(gr.Error) as error:
        readable_errors(bug)()
    assert error.value.message.startswith("Something went wrong on our side (KeyError)")
    assert "Traceback" not in error.value.message


def test_models_come_from_the_environment_or_the_bundled_folders(monkeypatch, tmp_path):
    from lung_space.model_service import PIPELINE_ENV, SDM_FOLDER, find_pipeline, load_examples

    monkeypatch.delenv(PIPELINE_ENV, raising=False)
    found = find_pipeline(PIPELINE_ENV, SDM_FOLDER)
    assert found.endswith("pipelines/lung-sdm-64")
    monkeypatch.setenv(PIPELINE_ENV, "someone/their-lung-sdm")  # a Hub id is passed on as it is
    assert find_pipeline(PIPELINE_ENV, SDM_FOLDER) == "someone/their-lung-sdm"
    monkeypatch.delenv(PIPELINE_ENV)
    with pytest.raises(FileNotFoundError, match="set LUNG_SPACE_NOPE"):
        find_pipeline("LUNG_SPACE_NOPE", "no-such-pipeline")
    examples = load_examples(found)
    assert set(examples) == {"healthy", "nodule"} and examples["nodule"][1] == 5.625
    assert load_examples(str(tmp_path)) == {}  # a pipeline without examples: the blank mask remains


def make_stale_output_dirs(root, count: int, files: int = 3) -> list:
    """``count`` download folders, each with a few files, last changed over an hour ago."""
    import os
    import time

    old = time.time() - model_service.OUTPUT_MAX_AGE_S - 60
    folders = []
    for k in range(count):
        folder = root / f"stale-{k}"
        folder.mkdir(parents=True)
        for n in range(files):
            (folder / f"synthetic_{n}.png").write_bytes(b"old")
        os.utime(folder, (old, old))
        folders.append(folder)
    return folders


def test_concurrent_requests_clean_old_download_folders_without_errors(monkeypatch, tmp_path):
    # Requests that clean the output root at the same moment must not trip over a folder another one just removed.
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / "lung-space-outputs"
    errors, made = [], []

    def request(start: threading.Barrier) -> None:
        start.wait()
        try:
            made.append(model_service.fresh_output_dir())
        except Exception as error:  # noqa: BLE001 (counted and reported)
            errors.append(repr(error))

    for _ in range(2):
        make_stale_output_dirs(root, 100, files=2)
        start = threading.Barrier(8)
        threads = [threading.Thread(target=request, args=(start,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert sorted(root.iterdir()) == sorted(made)  # every old folder gone, every new one kept


def test_a_missing_pipeline_folder_is_said_not_to_exist(monkeypatch, tmp_path):
    from lung_space.model_service import ModelService

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^LUNG_SPACE_PIPELINE ./nopipe: {tmp_path}/nopipe does not exist$"):
        ModelService("./nopipe", None)
    with pytest.raises(FileNotFoundError, match="^LUNG_SPACE_PIPELINE someone/nopipe: neither a local folder nor a"):
        ModelService("someone/nopipe", None)
