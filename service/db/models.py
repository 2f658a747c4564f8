"""SQLAlchemy models of the service's own tables (all prefixed ``hpo_``; Optuna owns the rest)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the hpo_* tables; Alembic migrates exactly these."""


class StudyStatus(enum.StrEnum):
    """running: workers take trials; paused: no new trials; stopped: running trials end at
    their next epoch; completed: the budget is spent and nothing is left running or waiting.

    creating and deleting mark a study while POST or DELETE works on it: such a study is not
    shown, and one left so by a crash or an outage is finished off by the API's sweep
    (service.studies.cleanup.finish_interrupted).
    """

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    COMPLETED = "completed"
    CREATING = "creating"
    DELETING = "deleting"


IN_PROGRESS = (StudyStatus.CREATING, StudyStatus.DELETING)  # a POST or DELETE is at work: not shown
OPEN = (StudyStatus.RUNNING, StudyStatus.PAUSED)  # may still complete: a spent budget or a stopping rule


def _now() -> datetime:
    return datetime.now(UTC)


def in_utc(moment: datetime) -> datetime:
    """A time read from the hpo_* tables, with its UTC offset: SQLite hands back naive datetimes
    (stored in UTC), PostgreSQL aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class StudyRecord(Base):
    """One study: its validated spec, status and budget. Its Optuna study has the same name.

    The budget is not a counter here: the slots taken are derived from Optuna's trials table
    under a row lock on this record (see service/scheduling/budget.py), so they cannot drift from it.
    """

    __tablename__ = "hpo_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=StudyStatus.RUNNING)
    max_trials: Mapped[int] = mapped_column(Integer, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # scheduling/failures
    status_reason: Mapped[str | None] = mapped_column(String(600), nullable=True)  # why it was paused, if not by a user
    # stop_when.max_wall_clock_s leaves paused (and stopped) time out: since when, and in all before
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    paused_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now, onupdate=_now)


class TallySnapshot(Base):
    """The API's count of one study's trials up to a trial id (service/studies/tallies.py), saved
    so that a restarted API reads only the trials since, not every trial of every study.

    A cache: exact because finished trials never change; losing it costs one full read.
    """

    __tablename__ = "hpo_tally_snapshots"

    optuna_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # the study's record's
    tally: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # counts, best, pending trials


class OutboxEvent(Base):
    """One notification to one receiver (service/notify): written in the transaction of the change it
    reports, delivered by the API's dispatcher, its attempts recorded."""

    __tablename__ = "hpo_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), nullable=False)  # the same for every receiver of one event
    study_name: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)  # the JSON sent, signed as it is
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    last_error: Mapped[str | None] = mapped_column(String(600), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
