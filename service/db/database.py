"""The one handle on the database: its engine (one connection pool), sessions, and Optuna's storage.

Build it once per process from the settings (``Database.from_settings``) and pass it to whatever
needs the database: the API keeps it on ``app.state``, a worker slot holds its own.

Connections are the scarce resource of a cluster (PostgreSQL allows 100 by default, and each
costs the server a process), so each kind of process gets a pool sized for how it uses the
database (POOLS) and names itself in ``pg_stat_activity.application_name`` (``hpo-worker``,
``hpo-api``, ...), so an operator can see who holds what.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event, or_, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import StudyRecord, StudyStatus
from service.optuna.resilient import ResilientRDBStorage, RetryAndReopen, build_storage
from service.settings import Settings


@dataclass(frozen=True)
class PoolPlan:
    """How many connections a kind of process keeps, and whether it tests them before use."""

    size: int  # kept open while idle
    overflow: int  # opened beyond ``size`` under load, closed again as soon as they are handed back
    ping: bool  # test each connection at checkout (a round trip per transaction)


POOLS = {
    # Requests run in parallel: 4 kept for a few clients at once (opening one per request
    # doubled the median of GET /studies in benchmarks/scale.py), up to 10 under load, back to 4
    # when it passes.
    "api": PoolPlan(size=4, overflow=6, ping=True),
    # One at steady state, two at most: the second for the moments a running trial's heartbeat
    # thread beats while the trial reports. (The claim is one transaction on one connection.)
    # No ping: every database call on a slot's path is retried instead (service.db.retry), and
    # SQLAlchemy drops the whole pool at the first disconnect it sees.
    "worker": PoolPlan(size=1, overflow=1, ping=False),
    "dashboard": PoolPlan(size=1, overflow=4, ping=True),
    # The API's notification dispatcher (service/notify): a pool of its own, so that a slow
    # receiver, whose row stays locked while it is sent, never holds a request's connection.
    "notify": PoolPlan(size=1, overflow=0, ping=True),
    # A worker's supervisor, which hands back the trials of a slot it saw die (worker/release.py).
    "supervisor": PoolPlan(size=1, overflow=1, ping=True),
    "tool": PoolPlan(size=1, overflow=2, ping=True),  # the CLI, migrations, tests, benchmarks
}
POOL_TIMEOUT_SECONDS = 10  # waiting longer for a pooled connection raises (the API answers 503)


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial beats, and how long without a beat before it counts as stale (seconds)."""

    interval: int
    grace: int


STOP_RULE_PREFIX = "stop_when."  # how a stopping rule's status_reason starts (service/spec/stopping.py)


class Database:
    """An engine on ``url``, a session factory on it, and Optuna's storage sharing its connection pool.

    ``role`` (a key of POOLS) sizes the pool and names the connections: ``hpo-<role>``.
    """

    def __init__(self, url: str, *, heartbeat: Heartbeat | None = None, role: str = "tool") -> None:
        self.url = url
        self.role = role
        self.engine = create_engine(url, **engine_options(url, role=role))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.heartbeat = heartbeat
        self._storage: ResilientRDBStorage | None = None
        self._storage_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, role: str = "tool") -> Database:
        """The database HPO_DATABASE_URL names, with trials beating as HPO_HEARTBEAT_* say."""
        heartbeat = Heartbeat(settings.heartbeat_interval, settings.heartbeat_grace)
        return cls(settings.database_url, heartbeat=heartbeat, role=role)

    @property
    def storage(self) -> ResilientRDBStorage:
        """Optuna's storage on this database, built at first use (it needs the migrated schema)."""
        with self._storage_lock:
            if self._storage is None:
                beat = self.heartbeat
                interval, grace = (beat.interval, beat.grace) if beat else (None, None)
                self._storage = build_storage(self.engine, interval, grace, reopen=self.reopen_if_completed)
            return self._storage

    def stale_trial_retry(self, *, handed_back: bool = False) -> RetryAndReopen:
        """Optuna's retry of a stale (or, ``handed_back``, a handed-back) trial on this database,
        keeping its reported epochs so that pruning stays right; its study reopened if needed."""
        return RetryAndReopen(self.reopen_if_completed, handed_back)

    def reopen_if_completed(self, name: str) -> None:
        """Set the study called ``name`` running again if it is marked completed (a retry was queued),
        unless a stopping rule completed it (service/scheduling/stopping.py): nothing runs after that."""
        by_rule = StudyRecord.status_reason.startswith(STOP_RULE_PREFIX)
        reopen = update(StudyRecord).where(
            StudyRecord.name == name,
            StudyRecord.status == StudyStatus.COMPLETED,
            or_(StudyRecord.status_reason.is_(None), ~by_rule),
        )
        with self.engine.begin() as connection:
            connection.execute(reopen.values(status=StudyStatus.RUNNING))

    def session(self) -> AbstractContextManager[Session]:
        """A session that commits when the block ends and rolls back if it raises (SQLAlchemy's own)."""
        return self.sessions.begin()

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and between tests)."""
        self.engine.dispose()


def engine_options(url: str, *, role: str = "tool") -> dict[str, Any]:
    """Engine options for a ``role`` process (POOLS) that survive database restarts (PostgreSQL)
    and lock waits (SQLite)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60, "check_same_thread": False}}
    pool = POOLS[role]
    return {
        "pool_pre_ping": pool.ping,
        "pool_recycle": 300,
        "pool_size": pool.size,
        "max_overflow": pool.overflow,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "connect_args": {"application_name": f"hpo-{role}"},
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
