"""The studies' periodic clean-up (the API runs it every few seconds): studies a POST or DELETE
left half-done finished off, and studies whose Optuna side was deleted elsewhere
(optuna-dashboard's delete) removed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
from sqlalchemy import select

from service.db.database import Database
from service.db.models import IN_PROGRESS, StudyRecord
from service.studies.lifecycle import remove_study

INTERRUPTED_AFTER = timedelta(minutes=10)  # far longer than any create or delete takes
log = logging.getLogger("hpo.sweeper")


def finish_interrupted(db: Database, artifact_root: Path, older_than: timedelta = INTERRUPTED_AFTER) -> list[str]:
    """Remove the studies left ``creating`` or ``deleting`` for longer than ``older_than``: a POST
    or DELETE that died half-way (its process killed, or the database gone). Returns their names."""
    cutoff = datetime.now(UTC) - older_than
    query = select(StudyRecord.name).where(StudyRecord.status.in_(IN_PROGRESS), StudyRecord.updated_at < cutoff)
    with db.sessions() as session:
        names = list(session.execute(query).scalars())
        session.commit()
        for name in names:
            log.warning("study %r was left half-created or half-deleted: removing it", name)
            remove_study(session=session, storage=db.storage, name=name, artifact_root=artifact_root)
    return names


def remove_orphans(db: Database, artifact_root: Path) -> list[str]:
    """Remove the studies whose Optuna study is gone although nothing is creating or deleting them
    (deleted from optuna-dashboard, or with Optuna's API). Returns their names."""
    with db.sessions() as session:
        settled = select(StudyRecord.name).where(StudyRecord.status.not_in(IN_PROGRESS))
        names = set(session.execute(settled).scalars())  # read before Optuna's names: see below
        session.commit()
        # A study settles (leaves `creating`) only once its Optuna side exists, so one settled
        # before Optuna's names were read and missing from them was deleted, not still being made.
        orphans = sorted(names - set(optuna.get_all_study_names(db.storage)))
        for name in orphans:
            log.warning("study %r has no Optuna study any more (deleted outside the API): removing it", name)
            remove_study(session=session, storage=db.storage, name=name, artifact_root=artifact_root)
    return orphans
