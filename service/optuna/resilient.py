"""Optuna's storage as the service runs it: retried across database restarts, stale trials re-queued."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy import Engine

from service.db.retry import database_retry
from service.optuna.storage import CACHE_BACKEND_CALLS, TunedRDBStorage

Reopen = Callable[[str], None]  # sets the study of that name running again if it was marked completed
StorageClass = TypeVar("StorageClass", bound=type)

MAX_RETRY = 3  # a lineage whose worker died this many times fails for good (and counts as finished)
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
    *CACHE_BACKEND_CALLS,  # what Optuna's trial cache calls instead of some of the above
)


def retrying(*names: str) -> Callable[[StorageClass], StorageClass]:
    """Class decorator: each method ``names`` of the class, inherited or its own, retried on
    transient database errors (service.db.retry.database_retry)."""

    def wrap(cls: StorageClass) -> StorageClass:
        for name in names:
            setattr(cls, name, database_retry(getattr(cls, name)))
        return cls

    return wrap


@retrying(*RETRIED_METHODS)
class ResilientRDBStorage(TunedRDBStorage):
    """TunedRDBStorage with the calls a running trial makes (RETRIED_METHODS) retried on transient
    database errors.

    Without the retries, Optuna wraps a failure in StorageInternalError and lets it propagate: a
    trial mid-epoch would die while PostgreSQL restarts, and its heartbeat thread with it.
    """


HANDED_BACK = "hpo_handed_back"  # system attribute: how many of a lineage's retries were hand-backs


class RetryAndReopen(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale (or handed-back) trial, then its study reopened if needed.

    Optuna fails a stale trial and enqueues its retry in two transactions. A worker checking the
    budget between the two sees the lineage finished and may mark the study completed; the retry
    would then wait forever (the chaos benchmark caught it). So once the retry is queued, a study
    marked completed meanwhile is set running again, and its budget check completes it when the
    retry ends.

    Only crashes count towards MAX_RETRY: a trial handed back by a worker shutting down on
    purpose (``handed_back``) is retried however often that happens.
    """

    def __init__(self, reopen: Reopen, handed_back: bool = False) -> None:
        super().__init__(max_retry=None, inherit_intermediate_values=True)  # the limit is checked here
        self.reopen = reopen
        self.handed_back = handed_back

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the retry (unless the lineage crashed MAX_RETRY times) and reopen the study.

        The retry starts with no user attributes: Optuna would copy the failed trial's, and the
        retry would show its predecessor's error (and start time) as its own.
        """
        hand_backs = int(trial.system_attrs.get(HANDED_BACK, 0))
        crashes = len(trial.system_attrs.get("retry_history", [])) - hand_backs
        if not self.handed_back and crashes >= MAX_RETRY:
            return  # the FAIL is final and counts as finished
        predecessor = copy.copy(trial)
        predecessor.user_attrs = {}
        predecessor.system_attrs = {**trial.system_attrs, HANDED_BACK: hand_backs + int(self.handed_back)}
        super().__call__(study, predecessor)
        self.reopen(study.study_name)


def build_storage(
    engine: Engine, heartbeat_interval: int | None, grace_period: int | None, reopen: Reopen
) -> ResilientRDBStorage:
    """Optuna's storage on ``engine``; with a heartbeat interval, stale trials are failed and
    retried (``reopen``: see RetryAndReopen)."""
    if heartbeat_interval is None:
        return ResilientRDBStorage(engine)
    return ResilientRDBStorage(
        engine,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=RetryAndReopen(reopen),
    )
