"""Optuna's insides for claiming and running one trial: the claim's Optuna half (pop a waiting
trial or create one inside the claim's transaction, its first writes, the trial cache told),
the trial's handle, the heartbeat thread, telling the end.

Pinned by tests/service/test_optuna_internals.py, like the rest of service/optuna/.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._heartbeat import BaseHeartbeat, HeartbeatThread, get_heartbeat_thread, is_heartbeat_enabled
from optuna.storages._rdb import models
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.orm import Session

from service.optuna.storage import TunedRDBStorage, upsert_heartbeat, upsert_user_attrs
from service.optuna.tables import waiting_trial_ids
from service.optuna.trial_cache import held


@dataclass(frozen=True)
class ClaimedTrial:
    """A trial the claim set RUNNING (popped from the waiting queue) or created."""

    trial_id: int
    created: FrozenTrial | None  # the trial as the claim created it; None: popped from the waiting queue
    in_claim_transaction: bool  # it commits (or vanishes) with the claim's transaction (PostgreSQL)

    @property
    def from_waiting_queue(self) -> bool:
        """A retry or an enqueued config, not a trial this claim created."""
        return self.created is None


def take_or_create_trial(
    storage: TunedRDBStorage, session: Session, study_id: int, *, waiting: bool, may_create: bool
) -> ClaimedTrial | None:
    """The claim's Optuna half, under the study lock held by ``session``: set the oldest WAITING
    trial RUNNING (``waiting``: the lock's count says there is one), or create a RUNNING trial if
    ``may_create``; None if neither.

    On PostgreSQL it runs inside ``session``'s transaction (``storage_joins``), so the lock, the
    trial and its first writes (``write_first_beat``) commit together on one connection. On
    SQLite, which has one writer at a time, Optuna commits the trial on its own connection.
    """
    one_transaction = session.get_bind().dialect.name == "postgresql"
    connection = session.connection()
    with storage_joins(storage, connection) if one_transaction else nullcontext():
        popped = pop_waiting_trial(storage, waiting_trial_ids(session, study_id) if waiting else [])
        if popped is not None:
            return ClaimedTrial(popped, None, one_transaction)
        if not may_create:
            return None
        created = create_trial(storage, study_id, connection if one_transaction else None)
        return ClaimedTrial(created._trial_id, created, one_transaction)


def write_first_beat(session: Session, claimed_trial_id: int, attrs: Mapping[str, Any]) -> None:
    """The claimed trial's first heartbeat and its user attributes ``attrs``; commit is the caller's."""
    upsert_heartbeat(session, claimed_trial_id)
    upsert_user_attrs(session, claimed_trial_id, attrs)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Optuna's API speaks of trial numbers; its storage of ids)."""
    return int(trial._trial_id)


def study_id(trial: optuna.Trial) -> int:
    """The storage's id of the trial's study."""
    return int(trial.study._study_id)


def trial_handle(study: optuna.Study, claimed_trial_id: int, created: FrozenTrial | None = None) -> optuna.Trial:
    """The ``optuna.Trial`` an objective is called with, for a trial this process already set RUNNING.

    ``created``: the trial as this process's claim created it (``ClaimedTrial.created``, with the
    user attributes the claim wrote). Optuna's constructor reads the trial back; on the worker's
    trial cache it gets a copy of ``created`` instead (service/optuna/trial_cache.py). Without it
    (a trial popped from the waiting queue, which may hold fixed parameters or a retry's
    reports), the constructor reads it.
    """
    if created is None:
        return optuna.Trial(study, claimed_trial_id)
    assert created._trial_id == claimed_trial_id, "the created trial is another trial"
    with held(study._storage, copy.deepcopy(created)):  # the Trial changes its copy as it runs
        return optuna.Trial(study, claimed_trial_id)


def tell(
    study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None
) -> tuple[TrialState, str | None]:
    """Finish a trial as ``Study.optimize`` does; returns the state told and why it failed, if it did.

    ``state`` None: COMPLETE if ``value`` is a finite number, else FAIL. A trial someone else
    finished already is left as it is. On the worker's trial cache, Optuna's read of the trial
    is answered by the trial as this process knows it (``Trial._get_latest_trial``); a trial
    finished elsewhere is then told by the state change, which the database refuses.
    """
    try:
        with held(study._storage, trial._get_latest_trial()):
            told, _, failure = _tell_with_warning(
                study, trial, value, state, skip_if_finished=True, suppress_warning=True
            )
    except optuna.exceptions.UpdateFinishedTrialError:
        return study._storage.get_trial(trial_id(trial)).state, None  # as the skip would have answered
    return told, failure


def pop_waiting_trial(storage: BaseStorage, candidates: Sequence[int]) -> int | None:
    """Set the first of the WAITING trials ``candidates`` (in queue order, see
    tables.waiting_trial_ids) RUNNING as Optuna's own queue does, and return its id; None
    if each is taken or finished by now.

    Optuna's ``Study._pop_waiting_trial_id`` finds them through the trial cache, whose first read
    of a study loads every trial of it: too slow under the study lock. On a TunedRDBStorage the
    state change is not retried on its own (inside the claim's transaction a retry cannot
    help: the claim is retried as a whole).
    """
    set_state: Callable[..., bool] = storage.set_trial_state_values
    if isinstance(storage, TunedRDBStorage):
        set_state = functools.partial(TunedRDBStorage.set_trial_state_values, storage)
    for candidate in candidates:
        try:
            if set_state(candidate, state=TrialState.RUNNING):
                return candidate
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


@contextmanager
def storage_joins(storage: RDBStorage, connection: Connection) -> Iterator[None]:
    """While open, Optuna's storage calls on this thread run inside ``connection``'s transaction,
    each in a savepoint: what they "commit" commits when that transaction does.

    The claim uses it so that the study lock, Optuna's creation (or pop) of the trial and its
    first writes are one transaction on one connection. Two connections would deadlock a
    connection pooler such as PgBouncer: lock holders waiting for a second connection while
    the others hold every connection waiting for the lock. Optuna's own retry of a failed
    creation rolls back to its savepoint, so the lock stays held.
    """
    storage.scoped_session.registry.set(Session(bind=connection, join_transaction_mode="create_savepoint"))
    try:
        yield
    finally:
        storage.scoped_session.remove()  # this thread's next storage call gets a session of its own again


def create_trial(storage: TunedRDBStorage, study_id: int, connection: Connection | None = None) -> FrozenTrial:
    """Create a RUNNING trial as the storage's ``create_new_trial`` does and return it.

    With ``connection`` (PostgreSQL: the claim's), in its transaction, in two statements whose
    cost does not grow with the study: Optuna's lock on its study row, which every creation
    of a trial (an enqueue, a retry) takes, then an insert that numbers the trial from an
    index (the highest number plus one: Optuna numbers trials 0, 1, 2, ... under that lock).
    Optuna's own creation counts the trials before the new one, reading the whole study
    while the claim holds its lock. Without (SQLite), Optuna's, committed on the storage's
    connection, without its retry (see pop_waiting_trial).
    """
    if connection is None:
        return storage._create_new_trial(study_id)
    study, trial = models.StudyModel, models.TrialModel
    connection.execute(select(study.study_id).where(study.study_id == study_id).with_for_update())
    started = datetime.now()  # naive local time, as Optuna writes it
    number = select(func.coalesce(func.max(trial.number) + 1, 0)).where(trial.study_id == study_id).scalar_subquery()
    row = connection.execute(
        insert(trial)
        .values(number=number, study_id=study_id, state=TrialState.RUNNING, datetime_start=started)
        .returning(trial.trial_id, trial.number)
    ).one()
    return FrozenTrial(
        number=row.number,
        state=TrialState.RUNNING,
        value=None,
        values=None,
        datetime_start=started,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=row.trial_id,
    )


def cache_claimed_trial(
    storage: BaseStorage, study_id: int, claimed: ClaimedTrial, attrs: Mapping[str, Any] | None = None
) -> None:
    """Tell the trial cache about a trial this process claimed, once the claim has committed.

    The cache must know a trial before parameters are set through it. The claim creates or
    pops the trial on the storage itself (Optuna's pop would read the whole study through the
    cache, under the lock); this adds the one trial, as the cache's ``create_new_trial`` does
    for a trial it creates, and marks it unfinished, as the cache's own read of a running
    trial does, so that later reads refresh it. A created trial is added as the claim wrote it
    (with ``attrs``, its first user attributes); a popped one is read (six statements).
    """
    if claimed.created is not None:
        claimed.created.user_attrs = json.loads(json.dumps(dict(attrs or {})))  # as a read would return them
    if not isinstance(storage, _CachedStorage):
        return
    trial = claimed.created if claimed.created is not None else storage._backend.get_trial(claimed.trial_id)
    with storage._lock:
        info = storage._studies.setdefault(study_id, _StudyInfo())
        storage._add_trials_to_cache(study_id, [trial])
        info.unfinished_trial_ids.add(claimed.trial_id)


class _HeartbeatAfterTheFirst(HeartbeatThread):
    """Optuna's heartbeat thread, minus its first beat (the claim committed that one)."""

    @staticmethod
    def _record_heartbeat(trial_id: int, heartbeat: BaseHeartbeat, stop_event: threading.Event) -> None:
        interval = heartbeat.get_heartbeat_interval()
        assert interval is not None
        while not stop_event.wait(timeout=interval):
            heartbeat.record_heartbeat(trial_id)


def heartbeat_thread(
    storage: BaseStorage, running_trial_id: int, *, first_beat_done: bool = False
) -> AbstractContextManager[None]:
    """While open, the trial's heartbeat is recorded every interval (nothing if heartbeats are off).

    The first beat comes at once, unless ``first_beat_done``: then after one interval.
    """
    if first_beat_done and is_heartbeat_enabled(storage):
        assert isinstance(storage, BaseHeartbeat)
        return _HeartbeatAfterTheFirst(running_trial_id, storage)  # type: ignore[return-value]
    return get_heartbeat_thread(running_trial_id, storage)  # type: ignore[return-value]
