"""The study lock: under it a worker decides whether a trial may start, and creates it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from filelock import FileLock
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.database import Database
from service.db.models import StudyRecord
from service.db.retry import TRANSIENT_ERRORS
from service.scheduling.budget import Budget, read_budget

log = logging.getLogger("hpo.budget")


class StudyLock:
    """A row lock on the study's ``hpo_studies`` row on PostgreSQL (``SELECT ... FOR UPDATE``);
    on SQLite, which has no row locks, a file lock beside the database.

    ``release()`` (idempotent) ends it: call it as soon as the trial exists.
    """

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self._name = name
        self._session: Session | None = None
        self._file_lock: FileLock | None = None

    def acquire(self) -> tuple[StudyRecord, Budget, int | None] | None:
        """Lock the study; its record, budget counts and Optuna id (None if no such study)."""
        query = select(StudyRecord).where(StudyRecord.name == self._name)
        if self._db.engine.dialect.name == "sqlite":
            self._file_lock = FileLock(f"{self._db.engine.url.database}.claim.lock")
            self._file_lock.acquire()
        else:
            query = query.with_for_update()
        self._session = self._db.sessions()
        record = self._session.execute(query).scalar_one_or_none()
        if record is None:
            self.release()
            return None
        # A second statement, not a join with the lock's: in READ COMMITTED a statement that waited
        # for the row lock would still see the counts from before the previous holder's commit.
        budget, optuna_id = read_budget(self._session, self._name)
        return record, budget, optuna_id

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
            except TRANSIENT_ERRORS:  # the server went away: the row lock went with the connection
                log.warning("could not commit while releasing the lock on study %r", self._name, exc_info=True)
            finally:
                self._session.close()
                self._session = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        return committed
