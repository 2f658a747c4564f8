"""Choosing the next study to serve and deciding, under its lock, whether a trial may start."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from service.budget import Progress, StudyLock, mark_completed_if_spent, progress
from service.database import session_scope
from service.models import StudyRecord, StudyStatus


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


def lock_if_startable(url: str, name: str) -> tuple[StudyLock, StudyRecord, Progress] | None:
    """Take the study's lock if a trial may start now; the caller releases it once the trial exists."""
    lock = StudyLock(url, name)
    got = lock.acquire()
    if got is None:
        return None
    record, p = got
    if not may_start(record, p):
        mark_completed_if_spent(lock.session, record, p)
        lock.release()
        return None
    return lock, record, p


def study_status(url: str, name: str) -> str | None:
    """The study's status now (None once deleted)."""
    with session_scope(url) as session:
        return session.execute(select(StudyRecord.status).where(StudyRecord.name == name)).scalar_one_or_none()
