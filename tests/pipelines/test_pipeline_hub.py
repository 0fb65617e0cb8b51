"""Save / load round trips in a fresh process, and push_to_hub's folder (upload patched: no network)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from lung_diffusers import LungSDMPipeline

LOAD_AND_SAMPLE = textwrap.dedent(
    """
    import sys, numpy as np, torch
    from lung_diffusers import LungSDMPipeline
    pipe = LungSDMPipeline.from_pretrained(sys.argv[1])
    pipe.set_progress_bar_config(disable=True)
    labels = np.load(sys.argv[2])
    out = pipe(labels, num_inference_steps=6, guidance_scale=1.5, generator=torch.Generator().manual_seed(3), output_type="np")
    np.save(sys.argv[3], out.images)
    """
)


def test_from_pretrained_in_a_fresh_process_gives_identical_images(tmp_path, tiny_pipe, reference_labels):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    np.save(tmp_path / "labels.npy", reference_labels.numpy())
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, tmp_path / "pipe", tmp_path / "labels.npy", tmp_path / "out.npy"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    expected = tiny_pipe(reference_labels, num_inference_steps=6, guidance_scale=1.5,
                         generator=torch.Generator().manual_seed(3), output_type="np").images
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_push_to_hub_uploads_safetensors_configs_and_a_synthetic_model_card(tmp_path, tiny_pipe, monkeypatch):
    uploaded = tmp_path / "uploaded"
    calls = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        import shutil

        calls["upload_folder"] = (repo_id, kwargs)
        shutil.copytree(folder_path, uploaded)
        return f"https://huggingface.co/{repo_id}/commit/fake"

    from huggingface_hub import HfApi

    # Every push goes through lung_diffusers.hub, which uploads with HfApi.
    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)

    tiny_pipe.push_to_hub("someone/lung-sdm-test", private=True)
    assert calls["create_repo"][0] == "someone/lung-sdm-test" and calls["create_repo"][1]["private"] is True
    files = {p.relative_to(uploaded).as_posix() for p in uploaded.rglob("*") if p.is_file()}
    assert {
        "model_index.json",
        "README.md",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    } <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    index = json.loads((uploaded / "model_index.json").read_text())
    assert index["_class_name"] == "LungSDMPipeline" and index["hu_window"] == [-1000.0, 400.0]

    card = (uploaded / "README.md").read_text()
    assert "library_name: diffusers" in card and "lung-diffusers" in card
    assert "synthetic" in card.lower() and "must not be used" in card and "diagnosis" in card
    assert 'LungSDMPipeline.from_pretrained("someone/lung-sdm-test")' in card
    assert "| classes | 6 |" in card and "`5`: nodule" in card

    # What was uploaded loads back as the same pipeline.
    reloaded = LungSDMPipeline.from_pretrained(uploaded)
    for (name, a), b in zip(tiny_pipe.unet.state_dict().items(), reloaded.unet.state_dict().values()):
        assert torch.equal(a, b), name


def test_save_pretrained_writes_the_model_card(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "local")
    card = Path(tmp_path / "local" / "README.md").read_text()
    assert "Every image this model makes is synthetic" in card
