"""Exact budgets, derived from Optuna's own tables.

A *lineage* is a trial together with its retries (RetryHeartbeatStaleTrialCallback marks each
retry, see service.optuna_internals.RETRY_OF). A study's budget counts lineages:

    slots taken = trials - retries
    finished    = COMPLETE + PRUNED + FAIL - retries   (a retried FAIL is not finished)

Workers create trials only while holding the study's lock (service.study_lock) and only when
a WAITING trial exists (an enqueued config, which took its slot when enqueued, or a retry,
which keeps its original's) or ``slots taken < max_trials``. Since nothing is counted
separately, nothing can drift: a worker killed at any moment leaves the numbers right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.models import StudyRecord, StudyStatus
from service.optuna_internals import COUNTED_STATES, study_stats


@dataclass(frozen=True)
class Progress:
    """A study's trials as the budget sees them, and the best value so far."""

    counts: dict[str, int]  # by Optuna state, lower-case: complete, pruned, fail, running, waiting
    retries: int  # trials that are retries of a failed trial
    best_value: float | None = None  # the highest validation accuracy of a COMPLETE trial

    @classmethod
    def of(cls, stats: Any) -> Progress:
        """From a row of service.optuna_internals.study_stats (None, or its columns None: no trials)."""
        counts = {state: int(getattr(stats, state, None) or 0) for state in COUNTED_STATES}
        best = getattr(stats, "best_value", None)
        return cls(counts, int(getattr(stats, "retries", None) or 0), None if best is None else float(best))

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


def records_with_stats(name: str | None = None) -> Select[Any]:
    """Each study's record (or the one called ``name``) with its Optuna study's stats, in one query.

    A row holds the StudyRecord and the study_stats columns (``optuna_id`` is None while the
    study has no Optuna side: being created or deleted).
    """
    stats = study_stats(name)
    query = select(StudyRecord, stats).outerjoin(stats, stats.c.name == StudyRecord.name)
    return query if name is None else query.where(StudyRecord.name == name)


def read_stats(session: Session, name: str) -> tuple[Progress, int | None]:
    """The trial counts of the study called ``name`` (no best value) and its Optuna id (None if it
    has no Optuna study)."""
    row = session.execute(select(study_stats(name, with_best_value=False))).first()
    return Progress.of(row), None if row is None else int(row.optuna_id)


def may_start(record: StudyRecord, progress: Progress) -> bool:
    """A trial may start: the study runs and a waiting trial exists or a slot is free."""
    waiting = progress.counts["waiting"] > 0
    return record.status == StudyStatus.RUNNING and (waiting or progress.slots_taken < record.max_trials)


def is_spent(record: StudyRecord, progress: Progress) -> bool:
    """The budget is used up and nothing is left running or waiting."""
    return progress.slots_taken >= record.max_trials and progress.active == 0


def mark_completed_if_spent(record: StudyRecord, progress: Progress) -> bool:
    """Set a running (or paused) study to completed once its budget is spent; True if it is now.

    The change is the caller's to commit (the record belongs to the caller's session).
    """
    if record.status in (StudyStatus.RUNNING, StudyStatus.PAUSED) and is_spent(record, progress):
        record.status = StudyStatus.COMPLETED
    return record.status == StudyStatus.COMPLETED
