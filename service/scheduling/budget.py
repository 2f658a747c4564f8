"""Exact budgets, derived from Optuna's own tables.

A *lineage* is a trial together with its retries (RetryHeartbeatStaleTrialCallback marks each
retry, see service.optuna.tables.RETRY_OF). A study's budget counts lineages:

    slots taken = trials - retries
    finished    = COMPLETE + PRUNED + FAIL - retries   (a retried FAIL is not finished)
                = trials - RUNNING - WAITING - retries

Workers create trials only while holding the study's lock (service.scheduling.lock) and only when
a WAITING trial exists (an enqueued config, which took its slot when enqueued, or a retry,
which keeps its original's) or ``slots taken < max_trials``. Since nothing is counted
separately, nothing can drift: a worker killed at any moment leaves the numbers right.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Subquery, bindparam, select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.sql.elements import BindParameter

from service.db.models import OPEN, StudyRecord, StudyStatus
from service.notify.outbox import emit
from service.optuna.tables import COUNTED_STATES, budget_stats


@dataclass(frozen=True)
class Budget:
    """What a budget decision needs; read from indexes (service.optuna.tables.budget_stats), so it costs
    the same at 50,000 trials as at none."""

    trials: int  # all trials, retries included
    running: int
    waiting: int
    retries: int  # trials that are retries of a failed trial

    @classmethod
    def of(cls, stats: Any) -> Budget:
        """From a row of service.optuna.tables.budget_stats (None, or its columns None: no trials)."""
        return cls(*(int(getattr(stats, column, None) or 0) for column in ("trials", "running", "waiting", "retries")))

    @property
    def slots_taken(self) -> int:
        """Lineages started or queued: what max_trials limits."""
        return self.trials - self.retries

    @property
    def finished(self) -> int:
        """Lineages that ended: COMPLETE, PRUNED, or FAIL and not retried."""
        return self.trials - self.active - self.retries

    @property
    def active(self) -> int:
        """Trials running or waiting to run."""
        return self.running + self.waiting


@dataclass(frozen=True)
class Progress:
    """A study's trials counted by state, and the best value so far: what a user is shown
    (service.optuna.tables.study_stats reads every trial; decisions use Budget)."""

    counts: dict[str, int]  # by Optuna state, lower-case: complete, pruned, fail, running, waiting
    retries: int  # trials that are retries of a failed trial
    best_value: float | None = None  # the highest validation accuracy of a COMPLETE trial
    compute_ms: int = 0  # the finished trials' durations summed (service.optuna.tables.trial_ms)

    @classmethod
    def of(cls, stats: Any) -> Progress:
        """From a row of service.optuna.tables.study_stats (None, or its columns None: no trials)."""
        counts = {state: int(getattr(stats, state, None) or 0) for state in COUNTED_STATES}
        best = getattr(stats, "best_value", None)
        retries, ms = (int(getattr(stats, column, None) or 0) for column in ("retries", "ms"))
        return cls(counts, retries, None if best is None else float(best), ms)

    @cached_property
    def budget(self) -> Budget:
        """The same counts as a Budget (computed once: a list of 200 studies asks for it 600 times)."""
        counts = self.counts
        return Budget(sum(counts.values()), counts["running"], counts["waiting"], self.retries)

    @property
    def slots_taken(self) -> int:
        """Lineages started or queued: what max_trials limits."""
        return self.budget.slots_taken

    @property
    def finished(self) -> int:
        """Lineages that ended: COMPLETE, PRUNED, or FAIL and not retried."""
        return self.budget.finished


def records_with_budget(name: str | BindParameter[str] | None = None) -> Select[Any]:
    """Each study's record (or the one called ``name``) with its budget_stats columns: the cheap
    read for decisions."""
    return _records_with(budget_stats(name), name)


def _records_with(stats: Subquery, name: str | BindParameter[str] | None) -> Select[Any]:
    """Records outer-joined to per-study ``stats`` (``optuna_id`` is None while a study has no
    Optuna side: being created or deleted)."""
    query = select(StudyRecord, stats).outerjoin(stats, stats.c.name == StudyRecord.name)
    return query if name is None else query.where(StudyRecord.name == name)


_BUDGET_OF_ONE = select(budget_stats(bindparam("study_name")))  # built once: building it cost more than running it


def read_budget(session: Session, name: str) -> tuple[Budget, int | None]:
    """The budget counts of the study called ``name`` and its Optuna id (None if it has no Optuna study)."""
    row = session.execute(_BUDGET_OF_ONE, {"study_name": name}).first()
    return Budget.of(row), None if row is None else int(row.optuna_id)


def may_start(record: StudyRecord, budget: Budget) -> bool:
    """A trial may start: the study runs and a waiting trial exists or a slot is free."""
    waiting = budget.waiting > 0
    return record.status == StudyStatus.RUNNING and (waiting or budget.slots_taken < record.max_trials)


def is_spent(record: StudyRecord, budget: Budget) -> bool:
    """The budget is used up and nothing is left running or waiting."""
    return budget.slots_taken >= record.max_trials and budget.active == 0


def completes_now(study: Any, budget: Budget) -> bool:
    """A running (or paused) study, a StudyRecord or a row with its ``status`` and ``max_trials``,
    whose budget is spent: it is to be marked completed."""
    return study.status in OPEN and is_spent(study, budget)


def mark_completed_if_spent(record: StudyRecord, budget: Budget) -> bool:
    """Set a running (or paused) study to completed once its budget is spent; True if it is now.

    The change is the caller's to commit (the record belongs to the caller's session). Several
    processes may find the same budget spent at once (workers' surveys, the API's reads), each
    with the record it read as running: the status changes with a conditional UPDATE, so only the
    one whose UPDATE changed the row writes the ``study.completed`` event.
    """
    if not completes_now(record, budget):
        return record.status == StudyStatus.COMPLETED
    session = object_session(record)
    if session is None:
        record.status = StudyStatus.COMPLETED
        return True
    completing = (
        update(StudyRecord)
        .where(StudyRecord.id == record.id, StudyRecord.status.in_(OPEN))
        .values(status=StudyStatus.COMPLETED)
        .execution_options(synchronize_session="fetch")
    )
    if not cast(CursorResult[Any], session.execute(completing)).rowcount:
        session.refresh(record, ["status"])  # another process changed it first
        return record.status == StudyStatus.COMPLETED
    data = {"reason": f"max_trials: {budget.finished} of {record.max_trials} trials finished"}
    emit(session, study=record.name, spec=record.spec, event="study.completed", data=data)
    return True
