"""Publishing, in one place: model cards, Hub pushes of model and dataset folders, and folder swaps that never
leave a half-written pipeline behind.

Both pipelines' ``save_pretrained`` / ``push_to_hub``, the training script's final folder and ``--push_to_hub``,
the data recipe's and ``synthesize``'s dataset pushes all go through here. Cards are rendered offline from
``templates/model_card.md``, which says the images are synthetic and not for diagnosis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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
):
    """Render the project's model card template (no network access).

    ``training`` (a table of facts about the training run) and ``fidelity`` (markdown) add sections.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from . import __version__

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


EVALUATION_FILE = "evaluation.md"
_SECTION_START = "<!-- lung-diffusers evaluate: start -->"
_SECTION_END = "<!-- lung-diffusers evaluate: end -->"


def with_evaluation_section(card_text: str, markdown: str) -> str:
    """``card_text`` with the ``lung-diffusers evaluate`` section set to ``markdown``: it replaces an earlier one, or
    goes before the card's ``## Labels`` section (at the end when there is none)."""
    section = f"{_SECTION_START}\n{markdown.strip()}\n{_SECTION_END}\n"
    start, end = card_text.find(_SECTION_START), card_text.find(_SECTION_END)
    if start >= 0 and end > start:
        return card_text[:start] + section + card_text[end + len(_SECTION_END) :].lstrip("\n")
    labels = card_text.find("\n## Labels")
    if labels < 0:
        return card_text.rstrip("\n") + "\n\n" + section
    return card_text[: labels + 1] + section + "\n" + card_text[labels + 1 :]


def refresh_evaluation_section(folder: str | os.PathLike) -> None:
    """Put the folder's ``evaluation.md`` (written by ``lung-diffusers evaluate --update-card``) into its card."""
    from .atomic_write import write_text_atomically

    folder = Path(folder)
    card, evaluation = folder / "README.md", folder / EVALUATION_FILE
    if card.is_file() and evaluation.is_file():
        write_text_atomically(card, with_evaluation_section(card.read_text(), evaluation.read_text()))


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    ignore_patterns: list[str] | None = None,
) -> str:
    """Create the Hub repository if needed and upload ``folder`` as it is; returns the commit URL.

    Nothing is rebuilt on the way: what was checked locally (weights, configs, card) is what is uploaded.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    created = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=getattr(created, "repo_id", repo_id),
        repo_type=repo_type,
        commit_message=commit_message or f"Upload with lung-diffusers ({Path(folder).name})",
        create_pr=create_pr,
        ignore_patterns=ignore_patterns,
    )
    return str(getattr(commit, "commit_url", commit))


@contextlib.contextmanager
def replaced_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Write a folder beside ``folder`` and swap it in only when the block completes (a pipeline folder is either
    the old one or the new one, never half of each)."""
    folder = Path(folder)
    staging = folder.parent / f".{folder.name}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        old = folder.parent / f".{folder.name}.old"
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old)
    else:
        staging.rename(folder)
