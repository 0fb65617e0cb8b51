"""Every code block of the README runs as written, or says on the line before it why not:
``<!-- not run in tests: reason -->``. A block that is neither (another language, or a command the runner cannot
run) fails the suite, so the walkthrough cannot rot.

The blocks run in README order in one working folder whose ``../shared`` is the shared data and which has the
repository's ``pipelines`` and ``dataset_scripts``, so each block finds what the blocks before it made (the
recipe's dataset, the exported slices). To keep the suite quick, options are turned down where the commands allow
(:data:`FAST_PYTHON`, :func:`fast_command`): fewer sampling steps and images, smaller slices for the anomaly map, and
the recipe limited to the scan the walkthrough exports; a command the README repeats runs once (a rerun of the
recipe only resumes). Commands run in this process (``lung-diffusers`` through its installed entry point,
``python -m`` and ``python script.py`` with runpy): a fresh interpreter per command would cost its imports, about
5 s each on 2 cores.
"""

import re
import runpy
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import PIL.Image
import pytest

from lung_diffusers import LungSDMPipeline, is_synthetic

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUN_LANGUAGES = ("bash", "python")
_FENCE = re.compile(r"^```(.*)$")
_MARKER = re.compile(r"^<!-- not run in tests: (?P<reason>\S.*?) -->$")

# The scan the walkthrough exports slices of (shared/data/README.md): the recipe prepares only this one.
WALKTHROUGH_SERIES = {"LIDC-IDRI-0003": "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264"}
FAST_STEPS = ["--steps", "2"]
FAST_REPAINT = [*FAST_STEPS, "--jump-length", "1", "--jump-n-sample", "1"]
# Noise level 0.25 needs a chain of 4 steps to take one; a 256-px pass of the prior takes seconds, a 64-px one not.
FAST_ANOMALY = ["--steps", "4", "--image-size", "64"]
# Python blocks: (pattern, replacement); each must match somewhere (checked), or the rule has gone stale.
FAST_PYTHON = {
    "sampling steps": (r"num_inference_steps=\d+", "num_inference_steps=2"),
    "RePaint schedule": (r"(remove_nodule\([^)]*)\)", r"\1, num_inference_steps=2, jump_length=1, jump_n_sample=1)"),
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None  # the marker's reason


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the reason of the marker on the line before each."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence:
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), None)
            assert end is not None, f"README line {index + 1}: a code block is never closed"
            marker = _MARKER.match(lines[index - 1]) if index else None
            code = "".join(f"{line}\n" for line in lines[index + 1 : end])
            blocks.append(Block(index + 1, fence.group(1).strip(), code, marker["reason"] if marker else None))
            index = end
        index += 1
    return blocks


def unaccounted_blocks(text: str) -> list[str]:
    """What breaks the rule: blocks neither run (bash, python) nor marked, and markers not followed by a block."""
    problems = [
        f"line {b.line}: a ```{b.language} block is not run by the tests; mark it <!-- not run in tests: reason -->"
        for b in readme_blocks(text)
        if b.not_run is None and b.language not in RUN_LANGUAGES
    ]
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if "not run in tests" in line and not (
            _MARKER.match(line) and number < len(lines) and lines[number].startswith("```")
        ):
            problems.append(f"line {number}: a marker must be <!-- not run in tests: reason --> right above a block")
    return problems


def test_every_readme_block_is_run_or_marked():
    assert unaccounted_blocks(README.read_text()) == []
    run = [b for b in readme_blocks(README.read_text()) if b.not_run is None]
    assert {b.language for b in run} == set(RUN_LANGUAGES)


def test_the_rule_catches_an_unmarked_block_a_stray_marker_and_a_command_it_cannot_run(monkeypatch):
    text = "```bash\nls\n```\n<!-- not run in tests: slow -->\n```bash\nmake\n```\n```text\nout\n```\n"
    text += "<!-- not run in tests: drifted -->\n\n```yaml\na: 1\n```\n"
    assert [b.not_run for b in readme_blocks(text)] == [None, "slow", None, None]
    problems = unaccounted_blocks(text)
    assert [p.split(":")[0] for p in problems] == ["line 8", "line 13", "line 11"]  # text and yaml; the drifted marker
    assert "```text block is not run" in problems[0] and "a marker must be" in problems[2]
    with pytest.raises(ValueError, match="cannot run 'make': mark its block"):
        run_command(["make", "demo"], monkeypatch)


# ---------------------------------------------------------------------------------------------- running them


def shell_commands(code: str) -> list[list[str]]:
    """The command lines of a bash block as words (continuation lines joined, comments dropped)."""
    return [words for line in code.replace("\\\n", " ").splitlines() if (words := shlex.split(line, comments=True))]


def fast_command(words: list[str], used: Counter) -> list[str]:
    """The command with its options turned down for the test (see the module docstring)."""
    if words[:1] == ["lung-diffusers"] and words[1] in ("remove-nodule", "insert-nodule"):
        used["repaint steps"] += 1
        return [*words, *FAST_REPAINT]
    if words[:1] == ["lung-diffusers"] and words[1] == "anomaly-map":
        used["anomaly steps"] += 1
        return [*words, *FAST_ANOMALY]
    if words[:1] == ["lung-diffusers"] and words[1] == "synthesize":
        used["synthesis images"] += 1
        position = words.index("--num-images") + 1
        return [*words[:position], "2", *words[position + 1 :], *FAST_STEPS, "--batch-size", "2"]
    if words[:2] == ["python", "dataset_scripts/prepare_luna16.py"]:
        used["recipe scans"] += 1
        return [*words, *(word for uid in WALKTHROUGH_SERIES.values() for word in ("--series-uid", uid))]
    return words


def run_command(words: list[str], monkeypatch) -> None:
    """Run one command line in this process; it must exit with status 0."""
    program, args = words[0], words[1:]
    if program == "lung-diffusers":
        (command,) = entry_points(group="console_scripts", name="lung-diffusers")  # the installed command
        argv, call = [program, *args], lambda: command.load()(args)
    elif program == "python" and args[:1] == ["-m"]:
        argv, call = args[1:], lambda: runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif program == "python":
        argv, call = args, lambda: runpy.run_path(args[0], run_name="__main__")
    else:
        raise ValueError(f"the README test cannot run {program!r}: mark its block <!-- not run in tests: reason -->")
    monkeypatch.setattr(sys, "argv", argv)
    try:
        call()
    except SystemExit as done:
        assert done.code in (0, None), f"{shlex.join(words)} exited with status {done.code}"


def run_block(block: Block, monkeypatch, used: Counter, namespaces: list[dict], ran: list) -> None:
    if block.language == "bash":
        for words in shell_commands(block.code):
            if words not in ran:
                ran.append(words)
                run_command(fast_command(words, used), monkeypatch)
        return
    code = block.code
    for name, (pattern, replacement) in FAST_PYTHON.items():
        code, count = re.subn(pattern, replacement, code)
        used[name] += count
    namespace: dict = {}
    exec(compile(code, f"README line {block.line}", "exec"), namespace)
    namespaces.append(namespace)


def test_readme_blocks_run(tmp_path, monkeypatch, capsys, shared_dir):
    import datasets

    (tmp_path / "shared").symlink_to(shared_dir)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("pipelines", "dataset_scripts"):  # the examples run from the repository root
        (work / name).symlink_to(REPO / name)
    monkeypatch.chdir(work)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))  # not the user's

    used, namespaces, ran = Counter(), [], []
    for block in readme_blocks(README.read_text()):
        if block.not_run is None:
            try:
                run_block(block, monkeypatch, used, namespaces, ran)
            except Exception as error:
                where = f"the README's {block.language} block at line {block.line}"
                raise AssertionError(f"{where}: {type(error).__name__}: {error}") from error
    stale = set(FAST_PYTHON) | {"repaint steps", "anomaly steps", "synthesis images", "recipe scans"}
    assert not stale - set(used), f"these speed-ups no longer match the README: {sorted(stale - set(used))}"

    # The quick start printed the HU shape and both synthetic marks.
    assert "(1, 64, 64) True True" in capsys.readouterr().out
    assert (work / "synthetic_slice.png").is_file() and (work / "my-lung-sdm" / "README.md").is_file()
    # The exported slices are real: no synthetic mark, and their licence travels with them.
    for folder in ("slices/0003-75", "slices/0003-92"):
        for name in ("slice.png", "slice.nii.gz", "label_map.png", "label_map.nii.gz"):
            assert not is_synthetic(work / folder / name)
        with PIL.Image.open(work / folder / "slice.png") as picture:
            assert "CC BY 3.0" in picture.text["Copyright"]
    # Every edit the walkthrough makes is marked synthetic.
    for folder in ("removed-python", "removed", "inserted", "anomaly"):
        assert is_synthetic(work / folder / "figure.png"), folder
    padded = next(n["padded"] for n in namespaces if "padded" in n)
    assert len(padded) == 2 and all(padded["synthetic"])
    assert LungSDMPipeline.from_pretrained(work / "sdm-small").unet.config.sample_size == 32
