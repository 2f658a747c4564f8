"""Optuna's RDBStorage, made to ride out database restarts and to spend fewer round trips.

Resilience: Optuna wraps SQLAlchemy failures in StorageInternalError and lets them
propagate; a trial mid-epoch would then die, and its heartbeat thread with it, while
PostgreSQL restarts. Here the calls a running trial makes are retried with exponential
backoff for up to RETRY_SECONDS; pool_pre_ping then hands out fresh connections once the
server is back.

Round trips (measured by benchmarks/coordination.py): user attributes that belong to the
end of a trial are written in the transaction that finishes it; a heartbeat is one upsert;
stale trials are looked for at most once per heartbeat interval rather than before every trial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_delay, wait_exponential

from service.trial_writes import running_without_heartbeat, trial_is_running, upsert_heartbeat, upsert_user_attrs

RETRY_SECONDS = 180
TRANSIENT = (optuna.exceptions.StorageInternalError, OperationalError, DBAPIError)
RETRIED_METHODS = (
    "record_heartbeat",
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_user_attrs",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_study_id_from_name",
    "get_study_directions",
    "get_best_trial",
    "get_trial_id_from_study_id_trial_number",
)

log = logging.getLogger("hpo.storage")

database_retry = retry(
    retry=retry_if_exception_type(TRANSIENT),
    wait=wait_exponential(multiplier=0.5, max=10),
    stop=stop_after_delay(RETRY_SECONDS),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage with the trial-path methods retried on transient errors, and fewer round trips."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale_checked_at: dict[int, float] = {}  # study id -> time.monotonic() of the last look
        self._attrs_on_finish: dict[int, dict[str, Any]] = {}  # trial id -> user attributes to write then
        self._beatless_since: dict[int, dict[int, float]] = {}  # study id -> {beatless trial id: first seen}

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set several user attributes of a running trial in one transaction."""
        with _create_scoped_session(self.scoped_session, True) as session:
            upsert_user_attrs(session, trial_id, attrs)

    def set_user_attrs_on_finish(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Write these user attributes in the same transaction that finishes the trial."""
        self._attrs_on_finish.setdefault(trial_id, {}).update(attrs)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """Optuna's state change, carrying the attributes set with ``set_user_attrs_on_finish``."""
        attrs = self._attrs_on_finish.pop(trial_id, None) if state.is_finished() else None
        if not attrs:
            return bool(super().set_trial_state_values(trial_id, state, values))
        # Optuna's scoped session is one Session per thread, so the state change below runs in
        # this transaction and its commit covers the attributes too. The trial is locked first (its
        # row on PostgreSQL, the database on SQLite): if another process has finished it, its
        # attributes stay as they are.
        session = self.scoped_session()
        try:
            if trial_is_running(session, trial_id):
                upsert_user_attrs(session, trial_id, attrs)
            else:
                session.rollback()
            return bool(super().set_trial_state_values(trial_id, state, values))
        except TRANSIENT:
            session.rollback()
            self._attrs_on_finish[trial_id] = attrs  # for the retry
            raise
        except BaseException:
            session.rollback()
            raise

    def record_heartbeat(self, trial_id: int) -> None:
        """One upsert per beat (Optuna reads the row first, then writes it)."""
        with _create_scoped_session(self.scoped_session, True) as session:
            upsert_heartbeat(session, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Stale trials of the study, looked for at most once per heartbeat interval per process.

        Optuna looks before every trial it asks for. A trial turns stale only a grace period
        after its last beat, so looking more often than a beat finds nothing new; it only
        costs two queries per trial.
        """
        now = time.monotonic()
        last = self._stale_checked_at.get(study_id)
        if last is not None and self.heartbeat_interval is not None and now - last < self.heartbeat_interval:
            return []
        self._stale_checked_at[study_id] = now
        return [*super()._get_stale_trial_ids(study_id), *self._orphaned_trial_ids(study_id, now)]

    def _orphaned_trial_ids(self, study_id: int, now: float) -> list[int]:
        """RUNNING trials that have had no heartbeat row for a whole grace period.

        A worker writes a trial's first beat just after creating it (worker/picking.py); one
        that died in between leaves a RUNNING trial Optuna never calls stale, since it has no
        beat to be late. Timed on this process's monotonic clock, not the trial's start time,
        so clock skew between machines cannot make a live trial look dead.
        """
        with _create_scoped_session(self.scoped_session) as session:
            beatless = set(session.execute(running_without_heartbeat(study_id)).scalars())
        seen = self._beatless_since.get(study_id, {})
        self._beatless_since[study_id] = since = {trial_id: seen.get(trial_id, now) for trial_id in beatless}
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        return sorted(trial_id for trial_id, first in since.items() if now - first >= grace)


for _name in RETRIED_METHODS:  # Optuna's methods and the overrides above alike
    setattr(ResilientRDBStorage, _name, database_retry(getattr(ResilientRDBStorage, _name)))
