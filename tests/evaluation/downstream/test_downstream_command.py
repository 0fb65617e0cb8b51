"""`lung-diffusers evaluate-downstream` end to end in quick mode on a tiny dataset: the report, the arms'
comparison, the honesty line, a second run that loads every model from the cache, and bad input in one line."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from downstream_support import write_nodule_recipe, write_synthetic_dataset

from lung_diffusers import cli

MODULE = "lung_diffusers.evaluation.downstream.command"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def evaluate_downstream(argv: list) -> int:
    """``lung-diffusers evaluate-downstream ARGV``, with the command registered (until cli.py lists it)."""
    modules = cli.COMMAND_MODULES if MODULE in cli.COMMAND_MODULES else (*cli.COMMAND_MODULES, MODULE)
    with mock.patch.object(cli, "COMMAND_MODULES", modules), pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate-downstream", *map(str, argv)])
    return exit_.value.code


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("downstream")
    return write_nodule_recipe(root / "recipe"), write_synthetic_dataset(root / "synthetic")


def test_quick_run_end_to_end_then_from_the_cache(inputs, tmp_path):
    pytest.importorskip("monai")
    recipe, synthetic = inputs
    argv = ["--dataset", recipe, "--synthetic", synthetic, "--tasks", "a", "c", "--repetitions", 2, "--image-size", 64]
    argv += ["--quick", "--output", tmp_path / "report", "--cache-dir", tmp_path / "cache"]
    assert evaluate_downstream(argv) == 0
    report = json.loads((tmp_path / "report" / "downstream.json").read_text())
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"downstream.json", "downstream.md", "downstream.png"}
    for task in ("a", "c"):
        summary = report["tasks"][task]
        assert set(summary["arms"]) == {"real", "real+synthetic"}
        assert [len(arm["runs"]) for arm in summary["arms"].values()] == [2, 2]  # seeds 0 and 1 in each arm
        assert summary["comparison"]["signed_rank_p"] is not None and summary["comparison"]["rank_sum_p"] is not None
        assert summary["test"]["patients"] == ["LIDC-IDRI-0001"] and summary["test"]["nodules"] == 1
    # The synthetic slices of the test patient are left out of training; those of LIDC-IDRI-0002 are used.
    assert report["synthetic"]["left_out_as_test_patients"] == [3]
    assert report["tasks"]["a"]["arms"]["real+synthetic"]["train"]["synthetic_images"] == 6  # 3 nodule + 3 lung
    assert report["tasks"]["a"]["arms"]["real"]["train"]["per_class"] == [6, 6]
    assert "1 test patient(s) (LIDC-IDRI-0001)" in report["honesty"] and "1 distinct nodule" in report["honesty"]
    assert report["timing"]["trained_runs"] == 8 and report["timing"]["cached_runs"] == 0
    markdown = (tmp_path / "report" / "downstream.md").read_text()
    assert report["honesty"] in markdown and "QUICK MODE" in markdown
    # Task (a)'s mistakes by class: every test patch of every run counted once, by its true class.
    for arm in ("real", "real+synthetic"):
        confusion = report["tasks"]["a"]["arms"][arm]["confusion"]
        assert [sum(row) for row in confusion] == [2 * n for n in report["tasks"]["a"]["test"]["per_class"]]
        accuracy = sum(r["accuracy"] for r in report["tasks"]["a"]["arms"][arm]["runs"]) / 2
        assert (confusion[0][0] + confusion[1][1]) / sum(map(sum, confusion)) == pytest.approx(accuracy)
    assert "| real | nodule | " in markdown and "predicted non-nodule" in markdown

    # Again: every model comes from the cache, and the results are the same.
    assert evaluate_downstream([*argv, "--overwrite"]) == 0
    again = json.loads((tmp_path / "report" / "downstream.json").read_text())
    assert again["timing"]["trained_runs"] == 0 and again["timing"]["cached_runs"] == 8
    for task in ("a", "c"):
        for arm in ("real", "real+synthetic"):
            before, after = (r["tasks"][task]["arms"][arm]["runs"] for r in (report, again))
            assert [{**run, "trained": None, "seconds": None} for run in after] == [
                {**run, "trained": None, "seconds": None} for run in before
            ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--repetitions", "0"], "repetitions must be at least 1"),
        (["--folds", "1"], "folds must be at least 2"),
        (["--synthetic", "no-such-folder"], "is not a folder"),
        (["--lidc-xml", "."], "--lidc-xml needs --luna16"),
        (["--max-healthy-slices", "0"], "--max-healthy-slices must be at least 1"),
    ],
)
def test_bad_input_exits_2_in_one_line(inputs, tmp_path, capsys, extra, message):
    recipe, _ = inputs
    assert evaluate_downstream(["--dataset", recipe, "--output", tmp_path / "out", *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert not (tmp_path / "out").exists()
