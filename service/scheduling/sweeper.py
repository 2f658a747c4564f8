"""Trials whose worker died, failed and re-queued: the periodic sweep of heartbeat-stale trials
(workers run it between trials, the API every few seconds), and at once for a process a worker's
supervisor saw die. The studies' own clean-up is service/studies/cleanup.py."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from sqlalchemy import select

from service.db.database import Database
from service.db.models import IN_PROGRESS, StudyRecord, StudyStatus
from service.optuna.tables import names_with_running_trials, running_trials_of_worker


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


def release_trials_of_dead_worker(db: Database, identity: str) -> list[int]:
    """Fail and re-queue the RUNNING trials of a worker process known to be dead (``identity``,
    its HOST:PID ``worker`` attribute), as Optuna's stale-trial sweep would a grace period later:
    the same FAIL, the same retry (counted as a crash), resumed from the trial's checkpoint.
    Returns the ids of the trials failed here (one that another process finished first is skipped).
    """
    with db.session() as session:
        owned = session.execute(running_trials_of_worker(identity)).all()
    storage, released = db.storage, []
    for name, trial_id in owned:
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished (or failed as stale) by another process meanwhile
        study = optuna.load_study(study_name=name, storage=storage)
        db.stale_trial_retry()(study, storage.get_trial(trial_id))
        released.append(trial_id)
    return released
