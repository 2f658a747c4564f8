"""Failing and re-queueing heartbeat-stale trials (also run periodically by the API)."""

from __future__ import annotations

import optuna
from sqlalchemy import select

from service.database import session_scope
from service.models import StudyRecord, StudyStatus
from service.settings import get_settings
from service.storage import get_storage


def sweep_stale_trials(url: str) -> int:
    """Run Optuna's fail_stale_trials on every unfinished study; returns how many studies were swept."""
    settings = get_settings()
    storage = get_storage(url, settings.heartbeat_interval, settings.heartbeat_grace)
    with session_scope(url) as session:
        names = (
            session.execute(select(StudyRecord.name).where(StudyRecord.status != StudyStatus.COMPLETED)).scalars().all()
        )
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue  # being created or deleted right now
        optuna.storages.fail_stale_trials(study)
    return len(names)
