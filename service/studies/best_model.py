"""The best trial's final weights: the model a study found, as a state_dict file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.artifacts import study_artifact_dir, weights_file
from service.db.models import StudyRecord
from service.errors import StudyConflictError, StudyNotFoundError
from service.studies.tallies import StudyTallies
from service.studies.trials import best_trial


class NoModelError(StudyNotFoundError):
    """The study has no best trial with weights (yet, or any more): 404."""


def best_model_file(*, session: Session, name: str, artifact_root: Path, tallies: StudyTallies) -> tuple[Path, int]:
    """The best trial's weights file and its trial number; NoModelError when there is none.

    The file is found from the study's own folder and the trial's number, never from a path
    stored in the database, so no request can make the API read outside HPO_ARTIFACT_DIR.
    """
    try:
        best = best_trial(session=session, name=name, tallies=tallies)
    except StudyConflictError as exc:
        raise NoModelError(str(exc)) from None
    number = int(best["trial_number"])
    if (best["config"].get("dataset", {}).get("validation") or {}).get("kind") == "kfold":
        raise NoModelError(
            f"study {name!r} selects on k-fold cross-validation: a trial trains one model per fold and keeps "
            f"none; refit its best config on all training images (`hpo study best {name} --refit --download F`)"
        )
    record = session.scalars(select(StudyRecord).where(StudyRecord.name == name)).first()
    if record is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    path = weights_file(study_artifact_dir(artifact_root, record.id, record.created_at), number)
    if not path.is_file():
        raise NoModelError(f"the weights of study {name!r}'s best trial ({number}) are not on this server")
    return path, number
