"""Model cards for lung-diffusers pipelines: built offline from a template that says the images are synthetic."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from . import __version__

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


def build_model_card(
    *,
    repo_id: str,
    title: str,
    summary: str,
    pipeline_class: str,
    usage: str,
    details: list[tuple[str, str]],
    labels: list[tuple[int, str]],
    tags: list[str],
    import_line: str | None = None,
    training: list[tuple[str, str]] | None = None,
    fidelity: str | None = None,
) -> ModelCard:
    """Render the project's model card template (no network access).

    ``training`` (a table of facts about the training run) and ``fidelity`` (markdown) add sections.
    """
    card_data = ModelCardData(
        library_name="diffusers",
        tags=["lung-diffusers", "diffusers", "medical-imaging", "computed-tomography", "lung", "synthetic-data", *tags],
        pipeline_tag="image-to-image",
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=title,
        summary=summary,
        pipeline_class=pipeline_class,
        repo_id=repo_id,
        usage=usage,
        details=details,
        labels=labels,
        version=__version__,
        import_line=import_line or f"from lung_diffusers import {pipeline_class}, save_synthetic_png",
        training=training,
        fidelity=fidelity,
    )
