"""Riding out a database restart: which errors are transient, and how long they are retried.

PostgreSQL restarting (or a connection dropped by the network) surfaces as a DBAPIError from
SQLAlchemy, or as Optuna's StorageInternalError wrapping one. Every database call on a
worker's path (the claim, heartbeats, reports, attributes, states, status checks) is retried
with exponential backoff for up to RETRY_SECONDS, so a restart pauses trials instead of
failing them. Past that the error propagates: a worker slot exits and its supervisor
restarts it; the trial it ran goes stale and is retried elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_delay, wait_exponential

RETRY_SECONDS = 180
TRANSIENT_ERRORS = (optuna.exceptions.StorageInternalError, DBAPIError)
T = TypeVar("T")
log = logging.getLogger("hpo.database")


def _log_wait(state: RetryCallState) -> None:
    """One line per wait, naming the database's answer (e.g. "too many clients already")."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__  # Optuna's wrapper says only that something failed
    reason = " ".join(str(getattr(error, "orig", None) or error).split())  # the driver's message, on one line
    sleep = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "database unavailable (%s: %s); retrying in %.1f s (waited %.0f s of %d)",
        type(error).__name__,
        reason[:300],
        sleep,
        state.seconds_since_start or 0.0,
        RETRY_SECONDS,
    )


database_retry = retry(
    retry=retry_if_exception_type(TRANSIENT_ERRORS),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(RETRY_SECONDS),
    before_sleep=_log_wait,
    reraise=True,
)


def call_with_retry(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)``, retried on transient database errors for up to RETRY_SECONDS."""
    return database_retry(function)(*args, **kwargs)
