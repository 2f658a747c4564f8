"""Failing and re-queueing heartbeat-stale trials (also run periodically by the API)."""

from __future__ import annotations

import optuna
from sqlalchemy import select

from service.database import Database
from service.models import StudyRecord, StudyStatus


def sweep_stale_trials(db: Database) -> int:
    """Run Optuna's fail_stale_trials on every unfinished study; returns how many studies were swept."""
    with db.session() as session:
        query = select(StudyRecord.name).where(StudyRecord.status != StudyStatus.COMPLETED)
        names = session.execute(query).scalars().all()
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=db.storage)
        except KeyError:
            continue  # being created or deleted right now
        optuna.storages.fail_stale_trials(study)
    return len(names)
