"""Uploading a synthetic dataset folder to the Hugging Face Hub as a dataset repository."""

from __future__ import annotations

from pathlib import Path

from .dataset_files import CARD_FILE, LOGS_DIR, SHARDS_DIR, data_files


def push_synthetic_dataset(output_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload the card, ``data/``, the settings and the contact sheet (not the batch shards or logs); returns the
    commit URL."""
    from ..hub import push_folder

    output_dir = Path(output_dir)
    if not (output_dir / CARD_FILE).is_file() or not data_files(output_dir):
        raise FileNotFoundError(f"{output_dir} is not a finished synthetic dataset (no {CARD_FILE} or data files)")
    return push_folder(
        output_dir,
        repo_id,
        repo_type="dataset",
        private=private,
        token=token,
        ignore_patterns=[f"{SHARDS_DIR}/*", f"{LOGS_DIR}/*", "**/.*", ".*"],
        commit_message="Upload a synthetic lung CT slice dataset made with lung-diffusers",
    )
