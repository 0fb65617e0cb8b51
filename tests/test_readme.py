"""The README's quick start runs as written (from a folder whose ../shared is the shared data)."""

import re
import shlex
from pathlib import Path

from lung_diffusers.convert_sdm import main as convert_main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_runs(tmp_path, monkeypatch, capsys, shared_dir):
    (tmp_path / "shared").symlink_to(shared_dir)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    convert = next(block for block in readme_blocks("bash") if "lung_diffusers.convert_sdm" in block)
    words = shlex.split(convert.replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "lung_diffusers.convert_sdm"]
    convert_main(words[3:])

    quick_start, own_model = readme_blocks("python")[:2]
    capsys.readouterr()
    exec(compile(quick_start, "README quick start", "exec"), {})
    assert capsys.readouterr().out.strip().endswith("True True")
    exec(compile(own_model, "README own model", "exec"), {})
    assert (work / "synthetic_slice.png").is_file() and (work / "my-lung-sdm" / "README.md").is_file()
