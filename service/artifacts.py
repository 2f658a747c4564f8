"""Where a study's files (its trials' checkpoints and final weights) live under HPO_ARTIFACT_DIR,
which weights are kept (HPO_KEEP_WEIGHTS) and which are pinned (other studies start from them),
and removing them."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.db.models import StudyRecord, StudyStatus, in_utc

log = logging.getLogger("hpo.service")


def study_artifact_dir(root: Path, study_id: int, created_at: datetime) -> Path:
    """``root/study-<id>-<created, UTC, to the microsecond>``: one folder per created study.

    Named by the study's database id, never by its user-chosen name, so that no name can lead
    elsewhere (checked all the same). The creation time makes the name unique even where the
    database reuses ids (SQLite reuses the highest id after a delete), so a new study never
    resumes a deleted one's checkpoints.
    """
    moment = in_utc(created_at)
    base = Path(root).resolve()
    folder = (base / f"study-{int(study_id)}-{moment.astimezone(UTC):%Y%m%d%H%M%S%f}").resolve()
    if folder.parent != base:
        raise ValueError(f"artifact folder {folder} is not directly under HPO_ARTIFACT_DIR={base}")
    return folder


def remove_study_artifacts(root: Path, study_id: int, created_at: datetime) -> None:
    """Delete the study's artifact folder, if this process can see it (log why not, otherwise)."""
    folder = study_artifact_dir(root, study_id, created_at)
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove the artifacts of a deleted study at %s: %s", folder, exc)


def weights_file(study_dir: Path, trial_number: int) -> Path:
    """Where a completed trial's final weights (a state_dict) are kept in its study's folder."""
    return study_dir / f"trial-{int(trial_number)}.weights.pt"


def prune_weights(
    study_dir: Path, keep: int, values: Mapping[int, float | None], pinned: Collection[Path] = ()
) -> list[int]:
    """Delete the final weights of all but the ``keep`` best completed trials in ``study_dir``;
    returns the trial numbers whose weights went.

    ``values``: the completed trials' values by number. A trial missing there, or None, has not
    finished (its weights are being written, or its worker is telling Optuna): its weights are
    never deleted. Nor are the ``pinned`` files (other studies start from them), which do not
    count as kept.
    """
    spared = {Path(p).resolve() for p in pinned}
    files = {number: p for number, p in weights_files(study_dir).items() if p.resolve() not in spared}
    if len(files) <= keep:
        return []
    finished = sorted((n for n in files if values.get(n) is not None), key=lambda n: (-(values[n] or 0.0), n))
    doomed = finished[keep:]
    for number in doomed:
        files[number].unlink(missing_ok=True)
    return doomed


def prune_unpinned_weights(
    session: Session, name: str, study_dir: Path, keep: int, values: dict[int, float | None], artifact_root: Path
) -> list[int]:
    """HPO_KEEP_WEIGHTS for study ``name``: delete the final weights of all but its ``keep`` best
    trials (``values``: the completed trials' values by number), sparing the files other studies
    start from; returns the trial numbers whose weights went.

    Under a lock on the study's row (FOR UPDATE, until the session's transaction ends), so a create
    pinning one of these files (service.spec.references.hold_init_study) either is seen here or
    finds the file gone.
    """
    session.execute(select(StudyRecord.id).where(StudyRecord.name == name).with_for_update())
    return prune_weights(study_dir, keep, values, pinned_weights(session, artifact_root))


def pinned_weights(session: Session, artifact_root: Path) -> set[Path]:
    """The weights files that studies start from (``init: {kind: study}``, pinned at creation):
    HPO_KEEP_WEIGHTS must not delete them."""
    rows = session.execute(_STARTING_FROM_STUDIES).all()
    return {(artifact_root / row.weights).resolve() for row in rows if row.weights}


def studies_starting_from(session: Session, name: str) -> list[str]:
    """The studies, by name, whose ``init`` is the weights of study ``name``."""
    query = _STARTING_FROM_STUDIES.where(_INIT["study"].as_string() == name)
    return sorted(row.name for row in session.execute(query))


def weights_files(study_dir: Path) -> dict[int, Path]:
    """The final weights files in a study's folder, by trial number."""
    return {int(m.group(1)): p for p in study_dir.glob("trial-*.weights.pt") if (m := _WEIGHTS.fullmatch(p.name))}


_WEIGHTS = re.compile(r"trial-(\d+)\.weights\.pt")
_INIT = StudyRecord.spec["init"]


def _starting_from_studies() -> Select[Any]:
    """Each study (not being deleted) that starts from another's weights: its ``name``, the
    ``study`` it starts from and the pinned ``weights`` file (relative to HPO_ARTIFACT_DIR)."""
    return select(
        StudyRecord.name, _INIT["study"].as_string().label("study"), _INIT["weights"].as_string().label("weights")
    ).where(_INIT["kind"].as_string() == "study", StudyRecord.status != StudyStatus.DELETING)


_STARTING_FROM_STUDIES = _starting_from_studies()
