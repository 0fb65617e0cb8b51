"""``lung-diffusers evaluate --quick`` end to end on a tiny random SDM and a phantom recipe dataset: the report
folder, its figures with their N, the resume from the cache, two models side by side, a synthesize folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lung_support import phantom_image, phantom_label_map, write_slice_dataset

from lung_diffusers.cli import main as cli_main
from lung_diffusers.evaluation import content_cache
from lung_diffusers.output_folder import MANIFEST_NAME
from lung_diffusers.synthetic_marker import is_synthetic

SIZE = 64


@pytest.fixture(scope="module")
def phantom_recipe(tmp_path_factory):
    """Healthy slices of three 'patients' (lungs of different widths, slices 2.5 mm apart), two nodule slices."""
    import datasets

    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(), "seriesuid": datasets.Value("string"),
        "slice_index": datasets.Value("int32"), "slice_z_mm": datasets.Value("float64"),
        "spacing": {"pixel_mm": datasets.Sequence(datasets.Value("float32"))},
    })  # fmt: skip
    rng = np.random.default_rng(0)

    def rows(patient: str, count: int, width: float, nodule: bool = False) -> list[dict]:
        out = []
        for k in range(count):
            labels = phantom_label_map(SIZE, 5 if nodule else None, (width + 0.004 * k, width - 0.03))
            out.append({"image": phantom_image(labels, rng), "mask": labels, "seriesuid": patient,
                        "slice_index": k, "slice_z_mm": 2.5 * k, "spacing": {"pixel_mm": [5.5, 5.5]}})  # fmt: skip
        return out

    as_images = lambda rows_: [  # noqa: E731
        {**r, "image": _png(r["image"]), "mask": _png(r["mask"])} for r in rows_
    ]
    shards = {
        "healthy": {
            "train": as_images(rows("P2", 4, 0.13) + rows("P3", 4, 0.15)),
            "test": as_images(rows("P1", 5, 0.14)),
        },
        "nodule": {"train": as_images(rows("P2", 2, 0.13, True)), "test": as_images(rows("P1", 1, 0.14, True))},
    }
    return write_slice_dataset(tmp_path_factory.mktemp("phantom-recipe"), shards, features)


def _png(array):
    import PIL.Image

    return PIL.Image.fromarray(array)


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    from diffusers import DDPMScheduler
    from lung_support import tiny_sdm

    from lung_diffusers import LungSDMPipeline

    folders = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp("pipes") / f"tiny-sdm-{seed}"
        LungSDMPipeline(unet=tiny_sdm(SIZE, seed=seed), scheduler=DDPMScheduler(variance_type="learned_range")).save_pretrained(folder)
        folders.append(folder)
    return folders


def evaluate(*argv) -> int:
    with pytest.raises(SystemExit) as stop:
        cli_main(["evaluate", *map(str, argv)])
    return stop.value.code


def test_quick_report_with_two_models_and_resume(phantom_recipe, tiny_pipelines, tmp_path, monkeypatch):
    output = tmp_path / "report"
    argv = ["--dataset", phantom_recipe, "--output", output, "--quick", "--steps", 2, "--batch-size", 4,
            *[a for folder in tiny_pipelines for a in ("--pipeline", folder)]]  # fmt: skip
    assert evaluate(*argv) == 0

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["settings"]["held_out"]["slices"] == 6 and metrics["settings"]["training"]["slices"] == 10
    floor = metrics["real"]["realism"]["all"]
    assert floor["n"] == 6 and floor["n_reference"] == 10 and np.isfinite(floor["frd_guarded"])
    assert "v1" in floor["frd_form"]
    assert metrics["real"]["realism"]["per_class"]["nodule"]["not_run"].startswith("too small")
    assert set(metrics["models"]) == {"tiny-sdm-0", "tiny-sdm-1"}
    for model in metrics["models"].values():
        assert model["lung_dice"]["n"] == 4  # --quick draws 4 held-out masks
        assert model["realism_vs_training"]["all"]["n"] == 4
        assert model["memorisation"]["synthetic_slices"] == 4 and model["memorisation"]["training_slices"] == 10
        assert model["diversity"]["masks"] == 3
        # A random U-Net draws noise: nothing like a training slice, and seeds unlike each other.
        assert model["memorisation"]["flagged"] == 0
        assert not model["diversity"]["collapsed"]
    assert metrics["versions"]["frd-score"] and metrics["versions"]["torch"]

    report = (output / "report.md").read_text()
    assert "| real held-out slices (the floor) | 6 |" in report
    assert "tiny-sdm-0" in report and "tiny-sdm-1" in report and "How weak this is" in report
    for figure in metrics["models"]["tiny-sdm-0"]["figures"]:
        assert is_synthetic(output / figure)
        assert f"]({figure})" in report

    # Everything is cached: a rerun draws and extracts nothing.
    monkeypatch.setattr(content_cache.ContentCache, "put", lambda *a: pytest.fail("made again"))
    assert evaluate(*argv) == 2  # refuses to overwrite without the flag
    assert evaluate(*argv, "--overwrite") == 0
    assert json.loads((output / "metrics.json").read_text())["models"] == metrics["models"]
    assert {"report.md", "metrics.json"} <= set(json.loads((output / MANIFEST_NAME).read_text())["files"])

    # One model's headline figures into its card, from the same cache (nothing drawn again).
    card = tiny_pipelines[0] / "README.md"
    card.write_text("# tiny\n\n## Labels\n\n- 0: background\n")
    one = ["--dataset", phantom_recipe, "--quick", "--steps", 2, "--batch-size", 4, "--pipeline", tiny_pipelines[0],
           "--cache-dir", output / "cache", "--update-card"]  # fmt: skip
    assert evaluate(*one, "--output", tmp_path / "one") == 0
    text = card.read_text()
    assert text.index("## Evaluation") < text.index("## Labels") and "| FRD (guarded) |" in text
    assert evaluate(*one, "--output", tmp_path / "two") == 0
    assert card.read_text().count("## Evaluation") == 1  # replaced, not added again


def test_bad_input_is_refused_before_any_model_loads(phantom_recipe, tiny_pipelines, tmp_path, capsys):
    assert evaluate("--dataset", phantom_recipe, "--output", tmp_path / "r") == 2
    assert "give at least one model" in capsys.readouterr().err
    assert evaluate("--dataset", phantom_recipe, "--output", tmp_path / "r", "--pipeline", tmp_path / "nope") == 2
    assert "does not exist" in capsys.readouterr().err
    assert evaluate("--dataset", phantom_recipe, "--output", tmp_path / "r", "--pipeline", tiny_pipelines[0],
                    "--diversity-seeds", 1) == 2  # fmt: skip
    assert "at least 2" in capsys.readouterr().err
    assert evaluate("--dataset", phantom_recipe, "--output", tmp_path / "r", "--pipeline", tiny_pipelines[0],
                    "--upscaler-strength", 0.5) == 2  # fmt: skip
    assert "needs --upscaler" in capsys.readouterr().err


def test_the_cascade_strength_reaches_the_pipeline_and_its_cache_key(tmp_path):
    from lung_diffusers.evaluation.content_cache import ContentCache
    from lung_diffusers.evaluation.generated_slices import GeneratedSlices, SamplerSettings

    calls = []

    class Recorder:
        config = type("Config", (), {"hu_window": (-1000, 400)})

        def __call__(self, masks, **kwargs):
            calls.append(kwargs)
            return type("Out", (), {"images": np.full((len(masks), *masks.shape[1:]), -500.0)})()

    plain = SamplerSettings("dpm", 25, 1.0, upscaler_steps=25)
    strong = SamplerSettings("dpm", 25, 1.0, upscaler_steps=25, upscaler_strength=0.6)
    assert "upscaler_strength" not in plain.key_fields()  # caches from before the option stay valid
    assert strong.key_fields()["upscaler_strength"] == 0.6 and "strength 0.6" in strong.label
    drawn = GeneratedSlices(Recorder(), "model", ContentCache(tmp_path))
    drawn._call([np.ones((8, 8), np.uint8)], [0], strong)
    assert calls[-1]["upscaler_strength"] == 0.6 and calls[-1]["upscaler_num_inference_steps"] == 25


def test_a_synthesize_folder_is_evaluated_as_a_model(phantom_recipe, tiny_pipelines, tmp_path, datasets_cache):
    synthetic = tmp_path / "padded"
    assert cli_main_code(["synthesize", "--pipeline", tiny_pipelines[0], "--masks", f"{phantom_recipe}:healthy/train",
                          "--num-images", 6, "--batch-size", 3, "--steps", 2, "--output", synthetic,
                          "--cache-dir", datasets_cache]) == 0  # fmt: skip
    output = tmp_path / "report"
    assert evaluate("--dataset", phantom_recipe, "--output", output, "--quick", "--synthetic", synthetic) == 0
    model = json.loads((output / "metrics.json").read_text())["models"]["padded"]
    assert model["kind"] == "synthesize output"
    assert model["realism_vs_training"]["all"]["n"] == 6 and model["memorisation"]["synthetic_slices"] == 6
    assert "seconds_per_image" not in model  # not drawn here
    assert is_synthetic(output / "closest-pairs-padded.png")


def cli_main_code(argv) -> int:
    with pytest.raises(SystemExit) as stop:
        cli_main([str(a) for a in argv])
    return stop.value.code
