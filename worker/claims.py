"""Claiming a trial under the study lock: the step that keeps every budget exact."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from sqlalchemy.orm import Session

from service.budget import Budget, mark_completed_if_spent, may_start
from service.database import Database
from service.models import StudyRecord
from service.optuna_internals import upsert_heartbeat, upsert_user_attrs
from service.optuna_tables import waiting_trial_ids
from service.optuna_trials import cache_claimed_trial, create_trial, pop_waiting_trial, storage_joins
from service.study_lock import StudyLock


@dataclass(frozen=True)
class Claim:
    """A trial this worker now owns (RUNNING), and the study as it was when claimed."""

    trial_id: int
    record: StudyRecord
    budget: Budget  # counts just before the claim
    from_waiting_queue: bool  # a retry or an enqueued config, not a trial created by this claim
    first_beat_committed: bool  # the trial's first heartbeat committed with the claim


def claim_trial(db: Database, name: str, storage: BaseStorage, attrs: Mapping[str, Any]) -> Claim | None:
    """Under the study's lock: take the oldest waiting trial, or create one if a slot is free.

    ``storage`` is the worker's Optuna storage (the trial cache its Study objects read), told of
    the trial once the claim has committed. Only this step holds the lock; sampling and
    training happen after it is released. Every trial is created here, after the budget check,
    which is what keeps the budget exact. On PostgreSQL the lock, the trial's creation (or pop),
    its first heartbeat and the user attributes ``attrs`` are one transaction on one connection
    (service.optuna_trials.storage_joins); on SQLite Optuna commits the trial on its own
    connection first. None: nothing may start (or no such study).
    """
    lock = StudyLock(db, name)
    locked = lock.acquire()
    if locked is None:
        return None
    record, budget, optuna_id = locked
    try:
        if optuna_id is None or not may_start(record, budget):
            mark_completed_if_spent(record, budget)
            return None
        one_transaction = db.engine.dialect.name == "postgresql"  # SQLite: its own (see below)
        with storage_joins(db.storage, lock.session.connection()) if one_transaction else nullcontext():
            waiting = waiting_trial_ids(lock.session, optuna_id) if budget.waiting else []
            trial_id = pop_waiting_trial(db.storage, waiting)
            from_waiting_queue, created = trial_id is not None, None
            if trial_id is None and budget.slots_taken < record.max_trials:
                created = create_trial(db.storage, optuna_id, lock.session.connection() if one_transaction else None)
                trial_id = created._trial_id
        if trial_id is None:
            return None
        claimed = trial_id

        def first_writes(session: Session) -> None:
            upsert_heartbeat(session, claimed)
            upsert_user_attrs(session, claimed, attrs)

        committed = lock.release(first_writes)
        if one_transaction and not committed:
            return None  # the trial went with the transaction; the slot looks for work again
        if created is not None:  # what first_writes stored, as a read would return it
            created.user_attrs = json.loads(json.dumps(dict(attrs)))
        cache_claimed_trial(storage, optuna_id, trial_id, created)
        return Claim(trial_id, record, budget, from_waiting_queue, first_beat_committed=committed)
    finally:
        lock.release()
