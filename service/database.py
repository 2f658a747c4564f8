"""The one handle on the database: its engine (one connection pool), sessions, and Optuna's storage.

Build it once per process from the settings (``Database.from_settings``) and pass it to whatever
needs the database: the API keeps it on ``app.state``, a worker slot holds its own.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.optuna_storage import ResilientRDBStorage, build_storage
from service.settings import Settings


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial beats, and how long without a beat before it counts as stale (seconds)."""

    interval: int
    grace: int


class Database:
    """An engine on ``url``, a session factory on it, and Optuna's storage sharing its connection pool.

    ``ping_on_checkout`` tests each pooled connection before handing it out: a round trip per
    transaction that makes the first request after a database restart succeed. The API keeps
    it; worker slots turn it off, because every database call on their path is retried anyway
    (service.db_retry) and SQLAlchemy drops the whole pool at the first disconnect it sees.
    """

    def __init__(self, url: str, *, heartbeat: Heartbeat | None = None, ping_on_checkout: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_options(url, ping_on_checkout=ping_on_checkout))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.heartbeat = heartbeat
        self._storage: ResilientRDBStorage | None = None
        self._storage_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, ping_on_checkout: bool = True) -> Database:
        """The database HPO_DATABASE_URL names, with trials beating as HPO_HEARTBEAT_* say."""
        heartbeat = Heartbeat(settings.heartbeat_interval, settings.heartbeat_grace)
        return cls(settings.database_url, heartbeat=heartbeat, ping_on_checkout=ping_on_checkout)

    @property
    def storage(self) -> ResilientRDBStorage:
        """Optuna's storage on this database, built at first use (it needs the migrated schema)."""
        with self._storage_lock:
            if self._storage is None:
                beat = self.heartbeat
                interval, grace = (beat.interval, beat.grace) if beat else (None, None)
                self._storage = build_storage(self.engine, interval, grace)
            return self._storage

    def session(self) -> AbstractContextManager[Session]:
        """A session that commits when the block ends and rolls back if it raises (SQLAlchemy's own)."""
        return self.sessions.begin()

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and between tests)."""
        self.engine.dispose()


def engine_options(url: str, *, ping_on_checkout: bool = True) -> dict[str, Any]:
    """Engine options that survive database restarts (PostgreSQL) and lock waits (SQLite)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60, "check_same_thread": False}}
    return {"pool_pre_ping": ping_on_checkout, "pool_recycle": 300, "pool_size": 5, "max_overflow": 5}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
