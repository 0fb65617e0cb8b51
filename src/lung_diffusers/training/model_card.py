"""Model cards of trained pipelines: the data, the exact command, steps, wall time, size and intended use.

The facts of the run are kept beside the weights in ``training.json``; fidelity figures, written later by
``training/evaluate_fidelity.py``, in ``fidelity.json``. The card (``README.md``) is rendered from both, so
either can be refreshed without the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic_write import write_text_atomically
from ..hub import build_model_card, refresh_evaluation_section
from ..learned_variance import predicts_learned_variance

TRAINING_FILE = "training.json"
FIDELITY_FILE = "fidelity.json"


def _training_rows(facts: dict) -> list[tuple[str, str]]:
    crop = f", random {facts['crop_size']}-px crops" if facts.get("crop_size") else ""
    hours = facts["wall_time_s"] / 3600
    return [
        ("data", f"`{facts['dataset']}`, configs {', '.join(facts['configs'])}, split `{facts['split']}` ({facts['num_slices']} slices)"),
        ("image size", f"{facts['resolution']} px{crop}"),
        ("steps", f"{facts['steps']} at batch {facts['batch_size']}"),
        ("weights", "EMA" if facts["ema"] else "raw (no EMA)"),
        ("wall time", f"{hours:.2f} h" if hours >= 1 else f"{facts['wall_time_s'] / 60:.1f} min"),
        ("command", f"`{facts['command']}`"),
        ("intended use", "research and demonstration only; every image it makes is synthetic"),
    ]


def fidelity_markdown(fidelity: dict) -> str:
    """A markdown table of the figures ``training/evaluate_fidelity.py`` writes; with a ``verdict`` column when its
    rows carry one (the cascade's: ``met``, ``missed`` or ``information`` per goal)."""
    verdicts = any("verdict" in row for row in fidelity["rows"])
    header = "| | synthetic | real | target |" + (" verdict |" if verdicts else "")
    lines = [fidelity.get("description", ""), "", header, "|---|---|---|---|" + ("---|" if verdicts else "")]
    for row in fidelity["rows"]:
        cells = [row["name"], row["synthetic"], row["real"], row["target"]]
        if verdicts:
            verdict = row.get("verdict", "")
            cells.append(f"**{verdict}**" if verdict in ("met", "missed") else verdict)
        lines.append("| " + " | ".join(cells) + " |")
    if fidelity.get("verdict"):
        lines += ["", fidelity["verdict"]]
    return "\n".join(lines).strip()


def write_training_card(folder: str | Path, pipeline=None, **facts) -> Path:
    """(Re)write ``README.md`` of a trained pipeline folder; ``facts`` are stored on first call, reused after.

    Args:
        folder: the pipeline folder (written by ``save_pretrained``).
        pipeline: the loaded pipeline (to describe its model); loaded from ``folder`` when omitted.
        facts: model ("sdm"/"ddpm"), dataset, configs, split, num_slices, steps, batch_size, resolution,
            crop_size, wall_time_s, command, ema, repo_id.
    """
    folder = Path(folder)
    facts_path = folder / TRAINING_FILE
    if facts:
        write_text_atomically(facts_path, json.dumps(facts, indent=2) + "\n")
    else:
        facts = json.loads(facts_path.read_text())
    fidelity_path = folder / FIDELITY_FILE
    fidelity = fidelity_markdown(json.loads(fidelity_path.read_text())) if fidelity_path.is_file() else None
    repo_id = facts.get("repo_id") or folder.name
    if facts["model"] in ("sdm", "upscaler"):
        if pipeline is None:
            from ..pipelines import load_pipeline

            pipeline = load_pipeline(folder, device=None)
        card = pipeline.model_card(repo_id, training=_training_rows(facts), fidelity=fidelity)
    else:
        card = _prior_card(folder, pipeline, repo_id, facts, fidelity)
    write_text_atomically(folder / "README.md", str(card))
    refresh_evaluation_section(folder)  # the evaluation's headline figures, when the folder has them
    return folder / "README.md"


def _prior_card(folder: Path, pipeline, repo_id: str, facts: dict, fidelity: str | None):
    if pipeline is None:
        from diffusers import DDPMPipeline

        pipeline = DDPMPipeline.from_pretrained(folder)
    unet = pipeline.unet.config
    crop = facts.get("crop_size") or facts["resolution"]
    return build_model_card(
        repo_id=repo_id,
        title=f"{repo_id.rstrip('/').split('/')[-1]}: healthy lung CT prior (DDPM)",
        summary=(
            "An unconditional DDPM with learned variance, trained on patches of **nodule-free** lung CT slices: the "
            "healthy prior that inpaints healthy tissue where a nodule was (RePaint). Made with lung-diffusers."
        ),
        pipeline_class="DDPMPipeline",
        import_line="from diffusers import DDPMPipeline",
        usage=(
            "patches = pipe(batch_size=4, num_inference_steps=100, output_type=\"np\").images  # synthetic patches\n"
            "# save with lung_diffusers.save_synthetic_png to keep the synthetic mark"
        ),
        details=[
            ("patch size", f"{crop} x {crop} of {facts['resolution']}-px slices, {unet.in_channels} channel"),
            ("learned variance", str(predicts_learned_variance(unet))),
            ("U-Net channels", ", ".join(str(c) for c in unet.block_out_channels)),
            ("parameters", f"{sum(p.numel() for p in pipeline.unet.parameters()) / 1e6:.1f} M"),
            ("scheduler", type(pipeline.scheduler).__name__),
            ("HU window", "[-1000, 400]: image value -1 is -1000 HU, +1 is 400 HU"),
        ],
        labels=[],
        tags=["ddpm", "unconditional-image-generation", "inpainting-prior"],
        training=_training_rows(facts),
        fidelity=fidelity,
    )
