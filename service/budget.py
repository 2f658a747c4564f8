"""Exact budgets, derived from Optuna's own tables.

A *lineage* is a trial together with its retries (RetryHeartbeatStaleTrialCallback marks
each retry with the system attribute ``failed_trial``). A study's budget counts lineages:

    slots taken = trials - retries
    finished    = COMPLETE + PRUNED + FAIL - retries   (a retried FAIL is not finished)

Workers create trials only while holding the study's lock (a row lock on ``hpo_studies`` on
PostgreSQL, a file lock beside the database on SQLite) and only when a WAITING trial exists
(an enqueued config, which took its slot when enqueued, or a retry, which keeps its
original's) or ``slots taken < max_trials``. Since nothing is counted separately, nothing
can drift: a worker killed at any moment leaves the numbers right.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from filelock import FileLock
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.database import get_engine, normalise_url
from service.models import StudyRecord, StudyStatus

STATES = ("complete", "pruned", "fail", "running", "waiting")
TRANSIENT_DB_ERRORS = (DBAPIError,)
log = logging.getLogger("hpo.budget")


@dataclass(frozen=True)
class Progress:
    """Trial counts of one study as the budget sees them."""

    counts: dict[str, int]  # by Optuna state, lower-case
    retries: int  # trials that are retries of a failed trial

    @property
    def slots_taken(self) -> int:
        """Lineages started or queued: what max_trials limits."""
        return sum(self.counts.values()) - self.retries

    @property
    def finished(self) -> int:
        """Lineages that ended: COMPLETE, PRUNED, or FAIL and not retried."""
        return self.counts["complete"] + self.counts["pruned"] + self.counts["fail"] - self.retries

    @property
    def active(self) -> int:
        """Trials running or waiting to run."""
        return self.counts["running"] + self.counts["waiting"]


def optuna_study_id(session: Session, name: str) -> int | None:
    """Optuna's numeric id of the study called ``name``."""
    row = session.execute(text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": name}).first()
    return None if row is None else int(row[0])


def progress(session: Session, name: str) -> Progress:
    """Count the study's trials by state, and its retries, in one query."""
    counts = dict.fromkeys(STATES, 0)
    retries = 0
    rows = session.execute(
        text(
            "SELECT t.state, COUNT(*), COUNT(a.trial_id) FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'failed_trial' "
            "WHERE s.study_name = :n GROUP BY t.state"
        ),
        {"n": name},
    )
    for state, count, retried in rows:
        counts[str(getattr(state, "name", state)).lower()] = int(count)
        retries += int(retried)
    return Progress(counts, retries)


def is_spent(record: StudyRecord, p: Progress) -> bool:
    """The budget is used up and nothing is left running or waiting."""
    return p.slots_taken >= record.max_trials and p.active == 0


def mark_completed_if_spent(session: Session, record: StudyRecord, p: Progress) -> bool:
    """Set a running (or paused) study to completed once its budget is spent; True if it is now."""
    if record.status in (StudyStatus.RUNNING, StudyStatus.PAUSED) and is_spent(record, p):
        record.status = StudyStatus.COMPLETED
    return record.status == StudyStatus.COMPLETED


class StudyLock:
    """The lock under which a worker decides to start a trial and creates it.

    On PostgreSQL it is a row lock on the study's ``hpo_studies`` row (``SELECT ... FOR
    UPDATE``); on SQLite, which has no row locks, a file lock beside the database. Either
    way, ``release()`` (idempotent) ends it: call it as soon as the trial exists.
    """

    def __init__(self, url: str, name: str) -> None:
        self._name = name
        self._engine = get_engine(normalise_url(url))
        self._session: Session | None = None
        self._file_lock: FileLock | None = None

    def acquire(self) -> tuple[StudyRecord, Progress] | None:
        """Lock the study and return its record and progress (None if it does not exist)."""
        query = select(StudyRecord).where(StudyRecord.name == self._name)
        if self._engine.dialect.name == "sqlite":
            self._file_lock = FileLock(f"{self._engine.url.database}.claim.lock")
            self._file_lock.acquire()
        else:
            query = query.with_for_update()
        self._session = Session(self._engine, expire_on_commit=False)
        record = self._session.execute(query).scalar_one_or_none()
        if record is None:
            self.release()
            return None
        return record, progress(self._session, self._name)

    @property
    def session(self) -> Session:
        """The session holding the lock (changes made through it commit on release)."""
        assert self._session is not None, "acquire() first"
        return self._session

    def release(self, write: Callable[[Session], None] | None = None) -> bool:
        """Commit and end the lock; safe to call more than once.

        ``write``, if given, runs in the lock's transaction first, so its rows commit with the
        lock's end (one round trip instead of two). Returns False if that commit failed: the
        lock is gone either way, but what ``write`` wrote is not there.
        """
        committed = False
        if self._session is not None:
            try:
                if write is not None:
                    write(self._session)
                self._session.commit()
                committed = True
            except TRANSIENT_DB_ERRORS:  # the server went away: the row lock went with the connection
                log.warning("could not commit while releasing the lock on study %r", self._name, exc_info=True)
            finally:
                self._session.close()
                self._session = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        return committed

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._session is not None and exc[0] is not None:
            self._session.rollback()
        self.release()
