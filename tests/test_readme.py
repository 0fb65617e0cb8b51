"""The README's examples run as written: the quick start on the bundled demo checkpoint, a model of one's own,
and the conversion of official SDM weights (from a folder whose ../shared is the shared data)."""

import re
import shlex
from pathlib import Path

from lung_diffusers import LungSDMPipeline
from lung_diffusers.convert_sdm import main as convert_main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_and_conversion_run(tmp_path, monkeypatch, capsys, shared_dir):
    (tmp_path / "shared").symlink_to(shared_dir)
    work = tmp_path / "work"
    work.mkdir()
    (work / "pipelines").symlink_to(REPO / "pipelines")  # the examples run from the repository root
    monkeypatch.chdir(work)

    quick_start, own_model = readme_blocks("python")[:2]
    capsys.readouterr()
    exec(compile(quick_start, "README quick start", "exec"), {})
    assert capsys.readouterr().out.strip().endswith("(1, 64, 64) True True")
    exec(compile(own_model, "README own model", "exec"), {})
    assert (work / "synthetic_slice.png").is_file() and (work / "my-lung-sdm" / "README.md").is_file()

    convert = next(block for block in readme_blocks("bash") if "lung_diffusers.convert_sdm" in block)
    words = shlex.split(convert.replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "lung_diffusers.convert_sdm"]
    assert not convert_main(words[3:])  # exit status 0
    assert LungSDMPipeline.from_pretrained(work / "sdm-small").unet.config.sample_size == 32
