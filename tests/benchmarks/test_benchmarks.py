"""The benchmarks run in their quickest mode (smoke tests: no timing is asserted), each as ``python
benchmarks/<name>.py ... --json FILE`` runs it, in this process; the checks read the numbers from the JSON file."""

import json

import pytest
import torch
from lung_support import REPO_ROOT, run_script

BENCHMARKS = REPO_ROOT / "benchmarks"


def run_benchmark(name: str, argv: list[str], folder) -> dict:
    """The benchmark's numbers, as its ``--json`` file holds them."""
    numbers = folder / f"{name}.json"
    assert run_script(BENCHMARKS / f"{name}.py", [*argv, "--json", numbers]) == 0
    return json.loads(numbers.read_text())


@pytest.fixture(autouse=True)
def keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_memory_benchmark_counts_agree_with_a_real_run(capsys, tmp_path):
    results = run_benchmark("benchmark_memory", ["--quick"], tmp_path)
    out = capsys.readouterr().out
    assert "Verdict: batch 8 with guidance in bf16" in out
    reuse = next(r for r in results["rows"] if r["mode"] == "reuse")
    assert reuse["maps"] == 9 and reuse["held_features"] == reuse["feature_bytes_formula"]
    for mode, check in results["cross_check"].items():
        # The fake-tensor count equals the same count on real tensors and torch's allocator record of the real run.
        assert check["fake_step_peak"] == check["real_counted_step_peak"], mode
        assert check["real_allocator_step_peak"] == pytest.approx(check["fake_step_peak"], rel=0.05), mode
        assert check["real_features_nbytes"] == check["feature_bytes_formula"]


def test_sdm_benchmark_quick_mode_extrapolates_ddpm(capsys, tmp_path):
    argv = [
        "--quick",
        "--skip-seed-size",
        "--repeats",
        "1",
        "--sampling-steps",
        "2",
        "--ddpm-steps",
        "2",
        "--threads",
        "1",
    ]
    results = run_benchmark("benchmark_sdm", argv, tmp_path)
    out = capsys.readouterr().out
    assert "EXTRAPOLATED from 2 steps" in out
    assert results["sampling_64x64"]["ddpm_1000_extrapolated"]
    assert list(results["models"]) == ["64x64, 64 ch"]


def test_sdm_benchmark_help_is_plain(capsys):
    assert run_script(BENCHMARKS / "benchmark_sdm.py", ["--help"]) == 0
    out = capsys.readouterr().out
    assert "--threads" in out and "--repeats" in out and "--quick" in out
    assert "(default: None)" not in out


def test_training_step_benchmark_runs(capsys, tmp_path):
    argv = ["--quick", "--precision", "fp32", "--batch-size", "1", "--resolution", "32", "--threads", "1"]
    results = run_benchmark("benchmark_training_step", argv, tmp_path)
    out = capsys.readouterr().out
    assert "SDM / UNet2DModel" in out and "SPADE label-map convs" in out
    assert {r["model"] for r in results["rows"]} == {"SDM, conv resampling", "SDM, resnet resampling", "UNet2DModel"}
    sdm, unet = results["flops"]["sdm"], results["flops"]["unet2d"]
    # Without its label-map convs the SDM does the UNet2DModel's work: the shapes really match.
    spade = sum(sdm[c] for c in ("mlp_shared", "mlp_gamma", "mlp_beta"))
    assert sdm["forward"] - spade == pytest.approx(unet["forward"], rel=0.02)


def test_gpu_check_runs_its_plumbing_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh runs this on a lent GPU; here the same code runs on a tiny model."""
    # fp32: the plumbing is the same, and bf16 convolutions on CPUs without AMX took minutes.
    results = run_benchmark("benchmark_gpu", ["--device", "cpu", "--tiny", "--training-steps", "1", "--dtype", "fp32"], tmp_path)
    assert [(r["batch"], r["masks"], r["features"]) for r in results["sampling"]] == [
        (b, m, f) for b, m in ((1, 1), (8, 1), (8, 8)) for f in ("reused", "recomputed")
    ]
    assert len(results["training"]) == 4 and all(r["steps_per_s"] > 0 for r in results["training"])
    assert "offload needs an accelerator" in results["offload"]["skipped"] and results["dtype"] == "fp32"


def test_cascade_benchmark_times_both_stages_of_a_256_px_slice(capsys, tmp_path):
    results = run_benchmark("benchmark_cascade", ["--quick", "--threads", "1"], tmp_path)
    out = capsys.readouterr().out
    assert "per 256-px image (goal: <= 30 s)" in out and "weights of" in out and "lung-sdm-upscaler-256" in out
    assert results["total_s"] == pytest.approx(results["stage1_s"] + results["stage2_s"])
    assert results["stage2_s"] > 0 and "baseline_forward_s" not in results  # --quick skips the seed-size model
    assert results["upscaler_steps_run"] == 1  # 2 steps at the default strength 0.4: at least one runs
    results = run_benchmark("benchmark_cascade", ["--quick", "--threads", "1", "--random-upscaler",
                                                  "--upscaler-strength", "1"], tmp_path)  # fmt: skip
    assert "random weights, demo shape" in capsys.readouterr().out and results["upscaler_steps_run"] == 2
