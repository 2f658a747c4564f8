"""Optuna's storage as the service runs it: retried across database restarts, stale trials re-queued."""

from __future__ import annotations

from optuna.storages import RetryHeartbeatStaleTrialCallback
from sqlalchemy import Engine

from service.db_retry import database_retry
from service.optuna_internals import TunedRDBStorage

MAX_RETRY = 3  # a trial whose worker died this many times fails for good (and counts as finished)
RETRIED_METHODS = (  # every storage call a running trial makes, Optuna's methods and TunedRDBStorage's alike
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


class ResilientRDBStorage(TunedRDBStorage):
    """TunedRDBStorage with the calls a running trial makes retried on transient database errors.

    Without the retries, Optuna wraps a failure in StorageInternalError and lets it propagate: a
    trial mid-epoch would die while PostgreSQL restarts, and its heartbeat thread with it.
    """


for _name in RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, database_retry(getattr(ResilientRDBStorage, _name)))


def stale_trial_retry() -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a trial whose worker died, keeping its reported epochs so pruning stays right."""
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY, inherit_intermediate_values=True)


def build_storage(engine: Engine, heartbeat_interval: int | None, grace_period: int | None) -> ResilientRDBStorage:
    """Optuna's storage on ``engine``; with a heartbeat interval, stale trials are failed and retried."""
    if heartbeat_interval is None:
        return ResilientRDBStorage(engine)
    return ResilientRDBStorage(
        engine,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=stale_trial_retry(),
    )
