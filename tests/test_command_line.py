"""One ending for every command (lung_diffusers.command_line): exit status, one error line, --debug."""

from __future__ import annotations

import argparse

import pytest

from lung_diffusers.command_line import DEBUG_ENV, add_debug_argument, debug_requested, run_command


@pytest.fixture(autouse=True)
def no_debug_environment(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)


def fail_with(error: BaseException):
    def work():
        raise error

    return work


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ValueError("--steps must be at least 1,\n  got 0"), 2, "tool: error: --steps must be at least 1, got 0"),
        (TypeError("expected a path"), 2, "tool: error: expected a path"),
        (FileNotFoundError("mask folder not found: masks"), 2, "tool: error: mask folder not found: masks"),
        (FileExistsError("out is not empty"), 2, "tool: error: out is not empty"),
        (
            OSError(28, "No space left on device"),
            1,
            "tool: error: OSError: [Errno 28] No space left on device (rerun with --debug or LUNG_DIFFUSERS_DEBUG=1 "
            "for the traceback)",
        ),
        (
            RuntimeError(),
            1,
            "tool: error: RuntimeError (rerun with --debug or LUNG_DIFFUSERS_DEBUG=1 for the traceback)",
        ),
        (KeyboardInterrupt(), 130, "tool: interrupted: rerun to resume"),
    ],
)
def test_an_error_is_one_line_with_its_exit_status(capsys, error, code, line):
    assert run_command(fail_with(error), [], prog="tool", interrupted="interrupted: rerun to resume") == code
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_success_and_the_status_the_work_returns(capsys):
    assert run_command(lambda: None, []) == 0
    assert run_command(lambda: 1, []) == 1  # e.g. every scan of a dataset run failed
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):  # argparse's own usage errors and --help end the process themselves
        run_command(lambda: argparse.ArgumentParser().parse_args(["--no-such-option"]), [])


def test_without_prog_the_line_starts_with_error(capsys):
    assert run_command(fail_with(ValueError("bad")), []) == 2
    assert capsys.readouterr().err == "error: bad\n"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_and_keeps_the_status(capsys, monkeypatch, how):
    argv = ["--steps", "0"]
    if how == "flag":
        argv.append("--debug")
    else:
        monkeypatch.setenv(DEBUG_ENV, "1")
    assert run_command(fail_with(ValueError("--steps must be at least 1")), argv, prog="tool") == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "ValueError: --steps must be at least 1" in err
    assert err.splitlines()[-1] == "tool: error: --steps must be at least 1"  # the summary stays last
    assert run_command(fail_with(KeyboardInterrupt()), argv) == 130
    assert "Traceback" in capsys.readouterr().err


def test_what_asks_for_debug(monkeypatch):
    assert debug_requested(["--debug"]) and not debug_requested(["--", "--debug"]) and not debug_requested([])
    for value, wanted in (("1", True), ("yes", True), ("0", False), ("", False), ("false", False)):
        monkeypatch.setenv(DEBUG_ENV, value)
        assert debug_requested([]) is wanted, value


def test_the_debug_flag_leaves_the_parsed_arguments_alone():
    parser = add_debug_argument(argparse.ArgumentParser())
    assert vars(parser.parse_args(["--debug"])) == vars(parser.parse_args([])) == {}
    assert "--debug" in parser.format_help()


# Every entry point ends through run_command: a bad input is one line with status 2, and --debug shows why.


SYNTHESIZE = ["synthesize", "--pipeline", "p", "--masks", "m", "--output", "out"]


def test_lung_diffusers_subcommands(capsys):
    from lung_diffusers.cli import main

    argv = [*SYNTHESIZE, "--num-images", "0"]  # refused before anything loads
    for words, debug in ((argv, False), ([*argv, "--debug"], True), (["--debug", *argv], True)):
        with pytest.raises(SystemExit) as done:
            main(words)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.splitlines()[-1].startswith("lung-diffusers synthesize: error:")
        assert ("Traceback" in err) == debug and (err.count("\n") == 1) == (not debug)


def test_synthesize_says_how_to_resume_after_ctrl_c(capsys, monkeypatch):
    from lung_diffusers.cli import main
    from lung_diffusers.synthesis import commands

    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_synthesize", interrupt)
    with pytest.raises(SystemExit) as done:
        main([*SYNTHESIZE, "--num-images", "1"])
    assert done.value.code == 130
    assert capsys.readouterr().err == "lung-diffusers synthesize: interrupted: run the same command again to resume\n"


def test_demo(tmp_path, capsys):
    from lung_diffusers.demo import cli

    argv = ["--pipeline", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]
    assert cli(argv) == 2 and capsys.readouterr().err.count("\n") == 1
    assert cli([*argv, "--debug"]) == 2 and "Traceback" in capsys.readouterr().err


def test_convert_sdm(tmp_path, capsys):
    from lung_diffusers.convert_sdm import main

    argv = ["--checkpoint", str(tmp_path / "w.pt"), "--config", str(tmp_path / "missing.json")]
    argv += ["--output", str(tmp_path / "out")]
    for debug in (False, True):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--debug"] if debug else argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.splitlines()[-1].startswith("python -m lung_diffusers.convert_sdm: error:")
        assert ("Traceback" in err) == debug


def test_training_scripts_through_run_script(capsys, monkeypatch):
    from lung_diffusers.training.script_cli import run_script

    assert run_script(lambda: {"a": "report"}) == 0  # the scripts' main() returns what it wrote, not a status
    assert run_script(fail_with(ValueError("--crop_size must be between 1 and 64"))) == 2
    assert capsys.readouterr().err == "error: --crop_size must be between 1 and 64\n"
    assert run_script(fail_with(KeyboardInterrupt()), interrupted="interrupted: rerun with --resume") == 130
    assert capsys.readouterr().err == "interrupted: rerun with --resume\n"
    monkeypatch.setenv(DEBUG_ENV, "1")
    assert run_script(fail_with(RuntimeError("CUDA out of memory"))) == 1
    assert "Traceback" in capsys.readouterr().err
