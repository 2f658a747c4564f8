"""Claiming a trial under the study lock: the step that keeps every budget exact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from service.db.database import Database
from service.db.models import StudyRecord
from service.optuna.trials import cache_claimed_trial, take_or_create_trial, write_first_beat
from service.scheduling.budget import Budget, mark_completed_if_spent, may_start
from service.scheduling.lock import StudyLock


@dataclass(frozen=True)
class Claim:
    """A trial this worker now owns (RUNNING), and the study as it was when claimed."""

    trial_id: int
    record: StudyRecord
    budget: Budget  # counts just before the claim
    from_waiting_queue: bool  # a retry or an enqueued config, not a trial created by this claim
    first_beat_committed: bool  # the trial's first heartbeat committed with the claim
    created: FrozenTrial | None = None  # the trial as this claim created it (None: popped from the waiting queue)


def claim_trial(db: Database, name: str, storage: BaseStorage, attrs: Mapping[str, Any]) -> Claim | None:
    """Under the study's lock: take the oldest waiting trial, or create one if a slot is free.

    ``storage`` is the worker's Optuna storage (the trial cache its Study objects read), told of
    the trial once the claim has committed. Only this step holds the lock; sampling and
    training happen after it is released. Every trial is created here, after the budget check,
    which is what keeps the budget exact. The trial's first heartbeat and the user attributes
    ``attrs`` commit with the lock's release (on PostgreSQL in the same transaction as the
    trial itself: service.optuna.trials.take_or_create_trial). None: nothing may start (or no
    such study).
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
        may_create = budget.slots_taken < record.max_trials
        claimed = take_or_create_trial(
            db.storage, lock.session, optuna_id, waiting=bool(budget.waiting), may_create=may_create
        )
        if claimed is None:
            return None
        committed = lock.release(lambda session: write_first_beat(session, claimed.trial_id, attrs))
        if claimed.in_claim_transaction and not committed:
            return None  # the trial went with the transaction; the slot looks for work again
        cache_claimed_trial(storage, optuna_id, claimed, attrs)
        return Claim(
            claimed.trial_id,
            record,
            budget,
            claimed.from_waiting_queue,
            first_beat_committed=committed,
            created=claimed.created,
        )
    finally:
        lock.release()
