"""Choosing the next study to serve and deciding, under its lock, whether a trial may start."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.budget import Progress, StudyLock, mark_completed_if_spent, progress
from service.database import session_scope
from service.models import StudyRecord, StudyStatus
from service.trial_writes import upsert_heartbeat, upsert_user_attrs


@dataclass(frozen=True)
class Candidate:
    """A running study and how much work it has."""

    name: str
    priority: int
    claimable: bool  # a waiting trial exists, or budget is left
    active: int  # trials running or waiting


def survey(url: str, only: str | None = None) -> list[Candidate]:
    """Running studies (or just ``only``) with their work, completing those whose budget is spent."""
    out = []
    with session_scope(url) as session:
        query = select(StudyRecord).where(StudyRecord.status == StudyStatus.RUNNING)
        if only is not None:
            query = query.where(StudyRecord.name == only)
        for record in session.execute(query.order_by(StudyRecord.priority.desc(), StudyRecord.created_at)).scalars():
            p = progress(session, record.name)
            if mark_completed_if_spent(session, record, p):
                continue
            out.append(Candidate(record.name, record.priority, may_start(record, p), p.active))
    return out


def choose(candidates: list[Candidate]) -> Candidate | None:
    """Highest priority first; among equals the study with the fewest active trials (then the oldest)."""
    claimable = [c for c in candidates if c.claimable]
    if not claimable:
        return None
    top = max(c.priority for c in claimable)
    return min((c for c in claimable if c.priority == top), key=lambda c: c.active)


def may_start(record: StudyRecord, p: Progress) -> bool:
    """A trial may start: the study runs and a waiting trial exists or a slot is free."""
    return record.status == StudyStatus.RUNNING and (p.counts["waiting"] > 0 or p.slots_taken < record.max_trials)


@dataclass(frozen=True)
class Claim:
    """A trial this worker now owns (RUNNING), and the study as it was when claimed."""

    trial_id: int
    record: StudyRecord
    progress: Progress  # counts just before the claim
    popped: bool  # taken from the waiting queue (a retry or an enqueued config), not created
    beat: bool  # its first heartbeat (and the claim's attributes) committed with the claim


def claim_trial(url: str, name: str, storage: BaseStorage, attrs: Mapping[str, Any]) -> Claim | None:
    """Under the study's lock: take the oldest waiting trial, or create one if a slot is free.

    ``storage`` is the worker's Optuna storage, the one its Study objects read. Only this step
    holds the lock; sampling and training happen after it is released. Every trial is created
    here, after the budget check, which is what keeps the budget exact. The trial's first
    heartbeat and the user attributes ``attrs`` commit with the lock's release.
    """
    lock = StudyLock(url, name)
    got = lock.acquire()
    if got is None:
        return None
    record, p = got
    try:
        if not may_start(record, p):
            mark_completed_if_spent(lock.session, record, p)
            return None
        study_id = optuna_study_id(storage, name, record.id)
        trial_id = pop_waiting_trial(storage, study_id) if p.counts["waiting"] else None
        popped = trial_id is not None
        if trial_id is None and p.slots_taken < record.max_trials:
            trial_id = storage.create_new_trial(study_id)
        if trial_id is None:
            return None
        claimed = trial_id

        def first_writes(session: Session) -> None:
            upsert_heartbeat(session, claimed)
            upsert_user_attrs(session, claimed, attrs)

        beat = lock.release(first_writes)
        return Claim(trial_id, record, p, popped, beat)
    finally:
        lock.release()


@functools.lru_cache(maxsize=256)
def optuna_study_id(storage: BaseStorage, name: str, record_id: int) -> int:
    """Optuna's id of the study (cached: it never changes for one hpo_studies row)."""
    return storage.get_study_id_from_name(name)


def pop_waiting_trial(storage: BaseStorage, study_id: int) -> int | None:
    """Set the oldest WAITING trial to RUNNING and return its id (Optuna's own queue semantics)."""
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished by someone else in the meantime
    return None


def study_status(url: str, name: str) -> str | None:
    """The study's status now (None once deleted)."""
    with session_scope(url) as session:
        return session.execute(select(StudyRecord.status).where(StudyRecord.name == name)).scalar_one_or_none()
