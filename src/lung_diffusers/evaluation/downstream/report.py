"""The downstream experiment's report: ``downstream.md`` (tables and the honesty line) and ``downstream.png``."""

from __future__ import annotations

import math
from pathlib import Path

from ...atomic_write import atomic_file
from .experiment import CLASS_NAMES, PADDED, REAL

JSON_FILE, MARKDOWN_FILE, FIGURE_FILE = "downstream.json", "downstream.md", "downstream.png"
METRIC_NAMES = {"accuracy": "accuracy", "ap50": "AP50"}
DEFINITIONS = (
    "Tasks (a) and (b) classify 32x32 patches centred on nodule cuts of at least 3 mm and as many random "
    "nodule-free lung patches (b: benign < 3 <= malignant mean LIDC rating) with an SE-ResNet; task (c) finds "
    "nodules as boxes centred on each nodule with side its diameter in that slice, scored by AP at IoU >= 0.5 "
    "(all-point interpolation, over every test slice: those with nodules and as many nodule-free ones). "
    "Intervals: 95% percentile bootstrap over test images of the mean over runs. p-values: Wilcoxon rank-sum over "
    "the runs of each arm (the thesis' test) and signed-rank over runs paired by seed."
)


def _number(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _interval(interval: dict) -> str:
    if interval["low"] is None or not math.isfinite(interval["low"]):
        return _number(interval["mean"])
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _p(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def markdown_report(report: dict) -> str:
    """The report as Markdown: the honesty line first, then one table per task."""
    lines = ["# Downstream utility of synthetic slices", "", report["description"], "", f"**{report['honesty']}**", ""]
    lines += [DEFINITIONS, ""]
    for task, summary in report["tasks"].items():
        metric = METRIC_NAMES[summary["metric"]]
        lines += [f"## Task ({task}): {summary['task']}", ""]
        if summary.get("note"):
            lines += [f"Note: {summary['note']}.", ""]
        lines += [
            f"| arm | runs | {metric}: mean ± sd over runs | {metric}: mean [95% interval over test images] | "
            "training images (nodule images) | rank-sum p | signed-rank p |",
            "|---|---|---|---|---|---|---|",
        ]
        comparison = summary.get("comparison", {})
        for arm, result in summary["arms"].items():
            train = result["train"]
            nodules = sum(train["per_class"][1:]) if "per_class" in train else train["nodule_images"]
            padded = arm == PADDED
            lines.append(
                f"| {arm} | {len(result['runs'])} | {_number(result['mean_over_runs'])} ± "
                f"{_number(result['std_over_runs'])} | {_interval(result['interval_over_test_images'])} | "
                f"{train['images']} ({nodules}; {train['synthetic_images']} synthetic) | "
                f"{_p(comparison.get('rank_sum_p')) if padded else '-'} | "
                f"{_p(comparison.get('signed_rank_p')) if padded else '-'} |"
            )
        if comparison:
            lines += [
                "",
                f"real+synthetic minus real, over test images: {_interval(comparison['difference'])}; p-values over "
                f"{comparison['runs_per_arm']} runs per arm (rank-sum, as the thesis; signed-rank over the paired seeds).",
            ]
        confusions = {arm: r["confusion"] for arm, r in summary["arms"].items() if "confusion" in r}
        if confusions:
            names = CLASS_NAMES[task]
            lines += [
                "",
                "Test patches by true class and predicted class, summed over the runs:",
                "",
                "| arm | true class | " + " | ".join(f"predicted {n}" for n in names) + " |",
                "|---|---|" + "---|" * len(names),
            ]
            for arm, counts in confusions.items():
                lines += [f"| {arm} | {n} | " + " | ".join(map(str, row)) + " |" for n, row in zip(names, counts)]
        test = summary["test"]
        lines += [
            "",
            f"Test: {test['images']} images, {test['nodules']} distinct nodule(s), patients "
            f"{', '.join(test['patients'])}.",
            "",
        ]
        runs = summary["arms"][REAL]["runs"]
        keys = [k for k in runs[0] if k not in ("fold", "seed", "trained", "seconds")] if runs else []
        lines += [
            "| arm | fold | seed | " + " | ".join(keys) + " | trained now | seconds |",
            "|---" * (len(keys) + 5) + "|",
        ]
        for arm, result in summary["arms"].items():
            for run in result["runs"]:
                values = " | ".join(_number(run[k]) for k in keys)
                lines.append(
                    f"| {arm} | {run['fold']} | {run['seed']} | {values} | {run['trained']} | {run['seconds']} |"
                )
        lines.append("")
    if report.get("lidc_nodules"):
        lines += [
            "## Nodules added from the LIDC reads",
            "",
            "| patient | centre (mm) | diameter (mm) | readers | mean malignancy | slices |",
            "|---|---|---|---|---|---|",
        ]
        for n in report["lidc_nodules"]:
            lines.append(
                f"| {n['patient_id']} | {n['center_mm']} | {n['diameter_mm']} | {n['readers']} | "
                f"{_number(n['malignancy'], '.2f')} | {n['slices']} |"
            )
        lines.append("")
    timing = report["timing"]
    lines += [
        f"Time: {timing['seconds']:.0f} s in all, {timing['trained_runs']} run(s) trained now, "
        f"{timing['cached_runs']} loaded from the cache ({report['settings']['cache_dir']}).",
        "",
    ]
    return "\n".join(lines)


def write_figure(report: dict, path: str | Path) -> Path:
    """One panel per task: each run's headline metric per arm (dots) and the mean with its interval over test
    images (bar). Written atomically as PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the downstream figure needs matplotlib: pip install 'lung-diffusers[train]'") from None
    tasks = report["tasks"]
    figure = Figure(figsize=(4.0 * len(tasks), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, (task, summary) in zip(axes, tasks.items()):
        metric = summary["metric"]
        for position, result in enumerate(summary["arms"].values()):
            values = [run[metric] for run in result["runs"] if run[metric] is not None]
            ax.scatter([position] * len(values), values, alpha=0.6, color=f"C{position}")
            interval = result["interval_over_test_images"]
            if interval["low"] is not None and math.isfinite(interval["low"]):
                ax.errorbar(
                    position + 0.15,
                    interval["mean"],
                    [[interval["mean"] - interval["low"]], [interval["high"] - interval["mean"]]],
                    fmt="s",
                    color="black",
                    capsize=4,
                )
        ax.set_xticks(range(len(summary["arms"])), list(summary["arms"]))
        ax.set_xlim(-0.5, len(summary["arms"]) - 0.5)
        ax.set_ylabel(METRIC_NAMES[metric])
        ax.set_title(f"({task}) {summary['task']}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    path = Path(path)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path
