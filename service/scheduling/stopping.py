"""Stopping rules at work: a study whose ``stop_when`` rule is met completes, with the rule and
the figure that met it as its ``status_reason`` (the rules themselves: service/spec/stopping.py).

They are checked when a trial finishes (the worker that finished it, in the transaction that
counts it) and by the API's sweep (the clock runs when no trial finishes). From the moment a
study completes, no worker claims a trial of it (scheduling/budget.may_start), and its running
trials end PRUNED at their next epoch (worker/slot_loop: a completed study is a stopped one), so
``finished`` never exceeds ``max_trials`` and nothing runs after completion.

Paused and stopped time does not count towards ``max_wall_clock_s``: ``paused_since`` and
``resumed`` keep the record's ``paused_at`` and ``paused_seconds``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.database import Database
from service.db.models import OPEN, StudyRecord, StudyStatus
from service.notify.outbox import emit
from service.optuna.stop_stats import stop_stats
from service.optuna.tables import optuna_ids
from service.spec.stopping import StopFigures, StopWhen, rule_met


def check_stop_rules(session: Session, record: StudyRecord, optuna_id: int) -> str | None:
    """Complete ``record``'s study if one of its rules is met; returns the reason (None: not met,
    or no rules). The caller commits."""
    raw = record.spec.get("stop_when")
    if not raw or record.status not in OPEN:
        return None
    rules = StopWhen.model_validate(raw)
    stats = stop_stats(session, optuna_id, rules.plateau.trials if rules.plateau else None)
    figures = StopFigures(
        best=stats.best,
        best_before_last=stats.best_before_last,
        finished=stats.finished,
        wall_clock_s=wall_clock_s(record, stats.first_start),
        compute_s=stats.compute_s,
    )
    reason = rule_met(rules, figures)
    if reason is not None:
        completing = update(StudyRecord).where(StudyRecord.id == record.id, StudyRecord.status.in_(OPEN))
        changed = session.connection().execute(completing.values(status=StudyStatus.COMPLETED, status_reason=reason))
        if changed.rowcount:
            emit(session, study=record.name, spec=record.spec, event="study.completed", data={"reason": reason})
    return reason


def has_stop_rules(spec: dict[str, Any] | None) -> bool:
    """Whether a stored spec has ``stop_when`` rules (without them there is nothing to check, and
    no reason to lock the study's row when a trial ends)."""
    return bool(spec and spec.get("stop_when"))


def check_stop_rules_of(session: Session, name: str) -> str | None:
    """``check_stop_rules`` for the study called ``name`` (locked for the check; None if it is gone)."""
    ids = optuna_ids()
    row = session.execute(
        select(StudyRecord, ids.c.optuna_id)
        .join(ids, ids.c.name == StudyRecord.name)
        .where(StudyRecord.name == name)
        .with_for_update(of=StudyRecord)
    ).first()
    return None if row is None else check_stop_rules(session, row[0], row[1])


def sweep_stop_rules(database: Database) -> int:
    """Check the rules of every running or paused study that has some (the API's sweep: the wall
    clock moves when no trial finishes); returns how many studies completed."""
    with database.session() as session:
        names = session.execute(select(StudyRecord.name, StudyRecord.spec).where(StudyRecord.status.in_(OPEN))).all()
    completed = 0
    for name, spec in names:
        if spec.get("stop_when"):
            with database.session() as session:
                completed += check_stop_rules_of(session, name) is not None
    return completed


def wall_clock_s(record: StudyRecord, first_start: datetime | None) -> float:
    """Seconds since the study's first trial started (``first_start``, naive local time as Optuna
    writes it), its paused and stopped time left out."""
    if first_start is None:
        return 0.0
    end = datetime.now() if record.paused_at is None else _local(record.paused_at)
    return max((end - first_start).total_seconds() - record.paused_seconds, 0.0)


def paused_since(record: StudyRecord, now: datetime) -> None:
    """Mark the study paused (or stopped) from ``now``, unless it was already."""
    if record.paused_at is None:
        record.paused_at = now


def resumed(record: StudyRecord, now: datetime) -> None:
    """Add the pause that ends ``now`` to the study's paused time."""
    if record.paused_at is not None:
        record.paused_seconds += max((now - _aware(record.paused_at)).total_seconds(), 0.0)
        record.paused_at = None


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite gives naive UTC back


def _local(moment: datetime) -> datetime:
    """A UTC moment in naive local time, as Optuna's datetimes are."""
    return _aware(moment).astimezone().replace(tzinfo=None)
