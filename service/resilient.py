"""An RDBStorage whose trial-path calls ride out a database restart (tenacity backoff).

Optuna wraps SQLAlchemy failures in StorageInternalError and lets them propagate; a trial
mid-epoch would then die, and its heartbeat thread with it, while PostgreSQL restarts. Here
the calls a running trial makes are retried with exponential backoff for up to
RETRY_SECONDS; pool_pre_ping then hands out fresh connections once the server is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import RDBStorage
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_delay, wait_exponential

RETRY_SECONDS = 180
TRANSIENT = (optuna.exceptions.StorageInternalError, OperationalError, DBAPIError)
RETRIED_METHODS = (
    "record_heartbeat",
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
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


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    return database_retry(method)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage with the trial-path methods retried on transient database errors."""


for _name in RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))
