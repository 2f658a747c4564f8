"""Where a study's files (its trials' checkpoints) live under HPO_ARTIFACT_DIR."""

from __future__ import annotations

from pathlib import Path


def study_artifact_dir(root: Path, study_id: int) -> Path:
    """``root/study-<id>``: named by the study's database id, never by its user-chosen name, so
    that no name can lead elsewhere; checked to lie under ``root`` all the same."""
    base = Path(root).resolve()
    folder = (base / f"study-{int(study_id)}").resolve()
    if folder.parent != base:
        raise ValueError(f"artifact folder {folder} is not directly under HPO_ARTIFACT_DIR={base}")
    return folder
