"""Claiming a trial under the study lock: the step that keeps every budget exact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from sqlalchemy.orm import Session

from service.budget import Budget, mark_completed_if_spent, may_start
from service.database import Database
from service.models import StudyRecord
from service.optuna_internals import cache_popped_trial, pop_waiting_trial, upsert_heartbeat, upsert_user_attrs
from service.optuna_tables import waiting_trial_ids
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

    ``storage`` is the worker's Optuna storage, the one its Study objects read. Only this step
    holds the lock; sampling and training happen after it is released. Every trial is created
    here, after the budget check, which is what keeps the budget exact. The trial's first
    heartbeat and the user attributes ``attrs`` commit with the lock's release. None: nothing
    may start (or no such study).
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
        waiting = waiting_trial_ids(lock.session, optuna_id) if budget.waiting else []
        trial_id = pop_waiting_trial(storage, waiting)
        from_waiting_queue = trial_id is not None
        if trial_id is None and budget.slots_taken < record.max_trials:
            trial_id = storage.create_new_trial(optuna_id)
        if trial_id is None:
            return None
        claimed = trial_id

        def first_writes(session: Session) -> None:
            upsert_heartbeat(session, claimed)
            upsert_user_attrs(session, claimed, attrs)

        committed = lock.release(first_writes)
        if from_waiting_queue:
            cache_popped_trial(storage, optuna_id, trial_id)
        return Claim(trial_id, record, budget, from_waiting_queue, first_beat_committed=committed)
    finally:
        lock.release()
