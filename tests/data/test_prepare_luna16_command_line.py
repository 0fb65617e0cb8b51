"""dataset_scripts/prepare_luna16.py ends through lung_diffusers.command_line (tests/test_command_line.py)."""

from __future__ import annotations


def test_bad_input_is_one_line_and_debug_shows_the_traceback(prepare_main, capsys, tmp_path):
    argv = ["--luna16-root", str(tmp_path / "none"), "--output", str(tmp_path / "out")]
    assert prepare_main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert prepare_main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: ")
