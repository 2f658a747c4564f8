"""The periodic sweep of heartbeat-stale trials: failed and re-queued (workers run it between
trials, the API every few seconds). The studies' own clean-up is service/studies/cleanup.py."""

from __future__ import annotations

import optuna
from sqlalchemy import select

from service.db.database import Database
from service.db.models import IN_PROGRESS, StudyRecord, StudyStatus
from service.optuna.tables import names_with_running_trials


def sweep_stale_trials(db: Database) -> int:
    """Run Optuna's fail_stale_trials on every unfinished study with a running trial; returns how
    many studies were swept. Finding them is one query, however many studies there are."""
    with db.session() as session:
        unfinished = StudyRecord.status.not_in([StudyStatus.COMPLETED, *IN_PROGRESS])
        query = select(StudyRecord.name).where(unfinished, StudyRecord.name.in_(names_with_running_trials()))
        names = session.execute(query).scalars().all()
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=db.storage)
        except KeyError:
            continue  # its Optuna side is gone (deleted outside the API)
        optuna.storages.fail_stale_trials(study)
    return len(names)
