"""Engines and the one session context manager everybody uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker


class StudyExistsError(Exception):
    """A study of that name exists already."""


def normalise_url(url: str) -> str:
    """Make a libpq-style ``postgresql://`` URL explicit about its driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


_PING_ON_CHECKOUT = [True]  # see skip_connection_pings


def engine_kwargs(url: str) -> dict[str, Any]:
    """Engine options shared by our engine and Optuna's: survive database restarts."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60, "check_same_thread": False}}
    return {"pool_pre_ping": _PING_ON_CHECKOUT[0], "pool_recycle": 300, "pool_size": 5, "max_overflow": 5}


def skip_connection_pings() -> None:
    """Do not ping pooled connections at checkout in engines this process makes from now on.

    The ping costs a round trip per transaction, and a trial makes about ten. Worker children
    skip it: every database call on their path is retried when a connection turns out dead
    (service.resilient, worker.loop), and SQLAlchemy drops the whole pool at the first
    disconnect it sees, so after a database restart one call fails and its retry succeeds.
    The API keeps the ping, so no request fails after a restart.
    """
    _PING_ON_CHECKOUT[0] = False


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per database URL per process."""
    url = normalise_url(url)
    if url not in _ENGINES:
        engine = create_engine(url, **engine_kwargs(url))
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        _ENGINES[url] = engine
    return _ENGINES[url]


def dispose_engines() -> None:
    """Close every pooled connection and forget the engines (tests, and after a fork)."""
    engines = list(_ENGINES.values())  # a snapshot: another thread may be adding one
    _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and maps unique-name clashes."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if "hpo_studies" in str(exc) or "unique" in str(exc).lower():
            raise StudyExistsError("a study with that name exists already") from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
