"""Remake the README's RePaint figures from the bundled demo checkpoints and the recipe's LIDC-IDRI mini data.

    python docs/make_readme_figures.py --dataset outputs/luna16-mini [--figures insertion] [--runs ../train-runs/sdm-64 ...]

``--dataset`` is the data recipe's output for ``../shared/data/lidc-mini`` (the README's ``prepare_luna16.py``
command). Removal: LIDC-IDRI-0003 slice 75 (a 21 mm nodule) with the healthy prior. Insertion: the README's
example, LIDC-IDRI-0003's nodule-free slice 92 (``healthy`` config), a 20-px nodule centred at row 121, column 86
in its right lung, with the SDM at the slice's own resolution. Both run through the ``lung-diffusers`` command as
the README shows it; the figures are copied to ``docs/images``. ``--figures`` remakes only the named ones.
``--runs``: training output folders whose tensorboard losses are plotted over steps (``training_loss.png``).

Its working files (the slices, the commands' outputs) go to fresh folders in a temporary directory, under the rule
of every lung-diffusers output folder (:mod:`lung_diffusers.output_folder`). In ``docs/images`` it replaces only
the figures named above, atomically; those are tracked by git, and nothing else there is touched.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from datasets import load_dataset

from lung_diffusers.atomic_write import atomic_file
from lung_diffusers.cli import main as lung_diffusers
from lung_diffusers.output_folder import output_folder

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
FIGURES = {"removal": "repaint_nodule_removal.png", "insertion": "repaint_nodule_insertion.png"}


def write_slice(dataset: str, config: str, patient: str, slice_index: int, folder: Path) -> tuple[Path, Path]:
    """The recipe's slice and label map (PNGs) of one slice of ``config``, written into a new ``folder``."""
    rows = load_dataset(dataset, config)
    for split in rows.values():
        for row in split:
            if row["patient_id"] == patient and row["slice_index"] == slice_index:
                with output_folder(folder, "make_readme_figures") as out:
                    for name, key in (("slice.png", "image"), ("mask.png", "mask")):
                        with atomic_file(out.path(name)) as temporary:
                            row[key].save(temporary)
                return folder / "slice.png", folder / "mask.png"
    raise SystemExit(f"{patient} slice {slice_index} is not in the {config} config of {dataset}")


def scalars(run: Path, tag: str) -> dict[int, float]:
    """One tensorboard scalar of a training run by step; a step logged again after a resume keeps its last value."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points = []
    for events in run.glob("logs/*/events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:  # the loader turns simple values into scalar tensors
                if value.tag == tag:
                    scalar = value.tensor.float_val[0] if value.tensor.float_val else value.simple_value
                    points.append((event.wall_time, event.step, scalar))
    return {step: value for _, step, value in sorted(points)}


def plot_losses(runs: list[Path], output: Path, window: int = 200) -> None:
    """Training loss over steps, each run's raw values faint and a moving average of ``window`` steps on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(7, 3.2), dpi=120)
    for run in runs:
        losses = scalars(run, "loss")
        if not losses:
            raise SystemExit(f"no tensorboard 'loss' under {run}/logs")
        steps = np.array(sorted(losses))
        values = np.array([losses[s] for s in steps])
        line = axis.plot(steps, values, alpha=0.15, linewidth=0.5)[0]
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1 :], smooth, color=line.get_color(), label=f"{run.name} ({window}-step mean)")
    axis.set(xlabel="step", ylabel="training loss (MSE + VB)", yscale="log")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_file(output) as temporary:
        figure.savefig(temporary)


def run(argv: list[str]) -> None:
    try:
        lung_diffusers(argv)
    except SystemExit as done:  # the command exits with its status
        if done.code:
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="the recipe's output for ../shared/data/lidc-mini")
    parser.add_argument("--runs", nargs="*", default=[], help="training output folders to plot the loss of")
    parser.add_argument("--pipelines", default=str(REPO / "pipelines"), help="folder of the demo checkpoints")
    parser.add_argument(
        "--figures", nargs="+", choices=FIGURES, default=list(FIGURES), help="the RePaint figures to remake (default: both)"
    )
    args = parser.parse_args()
    pipelines = Path(args.pipelines)
    if args.runs:
        plot_losses([Path(r) for r in args.runs], IMAGES / "training_loss.png")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if "removal" in args.figures:
            image, labels = write_slice(args.dataset, "nodule", "LIDC-IDRI-0003", 75, work / "removal")
            run(["remove-nodule", "--pipeline", str(pipelines / "lung-ddpm-prior-64"), "--image", str(image),
                 "--label-map", str(labels), "--samples", "3", "--output", str(work / "removed")])  # fmt: skip
            save_figure(work / "removed" / "figure.png", FIGURES["removal"])
        if "insertion" in args.figures:
            image, labels = write_slice(args.dataset, "healthy", "LIDC-IDRI-0003", 92, work / "insertion")
            run(["insert-nodule", "--pipeline", str(pipelines / "lung-sdm-64"), "--image", str(image),
                 "--label-map", str(labels), "--nodule-center", "121", "86", "--nodule-diameter-px", "20",
                 "--output", str(work / "inserted")])  # fmt: skip
            save_figure(work / "inserted" / "figure.png", FIGURES["insertion"])


def save_figure(figure: Path, name: str) -> None:
    with atomic_file(IMAGES / name) as temporary:  # a README figure is never half-written
        shutil.copyfile(figure, temporary)
    print(f"wrote {IMAGES / name}")


if __name__ == "__main__":
    main()
