"""Write a self-contained folder to upload as a Hugging Face Space (what `make space-bundle` runs).

    python spaces/make_bundle.py --output dist/space
    huggingface-cli upload your-name/lung-diffusers dist/space . --repo-type space

The folder holds the app (``app.py``, ``lung_space/``, ``examples/``), the Space card (``README.md``),
``requirements.txt``, the ``lung_diffusers`` package as source, and the demo pipelines (``pipelines/``).

The package goes in as source beside ``app.py`` rather than as a wheel listed in requirements.txt: the Spaces
builder installs requirements.txt before it copies the rest of the repository, so a local path there fails.
Python finds ``lung_diffusers/`` because the app's folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent
PIPELINES = ("lung-sdm-64", "lung-ddpm-prior-64")
OPTIONAL_PIPELINES = ("lung-sdm-upscaler-256",)  # the cascade's second stage: 256 px in the Space when present
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")


def build_bundle(output: Path, pipelines_root: Path = REPO_ROOT / "pipelines") -> Path:
    """Write the Space folder at ``output`` (replaced if it exists) and return it."""
    output = Path(output).resolve()
    missing = [name for name in PIPELINES if not (pipelines_root / name / "model_index.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"demo pipeline(s) {missing} not found under {pipelines_root}: train or copy them first"
        )
    if output == REPO_ROOT or REPO_ROOT.is_relative_to(output) or output.is_relative_to(SPACE_DIR):
        raise ValueError(f"refusing to write the bundle over {output}: choose a folder such as dist/space")
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("app.py", "README.md", "requirements.txt"):
        shutil.copy2(SPACE_DIR / name, staging / name)
    shutil.copy2(REPO_ROOT / "LICENSE", staging / "LICENSE")
    shutil.copytree(SPACE_DIR / "lung_space", staging / "lung_space", ignore=IGNORE)
    shutil.copytree(SPACE_DIR / "examples", staging / "examples", ignore=IGNORE)
    shutil.copytree(REPO_ROOT / "src" / "lung_diffusers", staging / "lung_diffusers", ignore=IGNORE)
    present = [name for name in OPTIONAL_PIPELINES if (pipelines_root / name / "model_index.json").is_file()]
    for name in (*PIPELINES, *present):
        shutil.copytree(pipelines_root / name, staging / "pipelines" / name, ignore=IGNORE)
    # Swap in whole, so an interrupted build never leaves a half-written bundle at `output`.
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "dist" / "space", help="bundle folder (replaced)")
    args = parser.parse_args(argv)
    try:
        folder = build_bundle(args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    print(f"Space bundle written to {folder} ({size:.1f} MiB). Try it: cd {folder} && python app.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
