"""Everything this project knows about Optuna's insides: with service/optuna_tables.py (SQL
reads of Optuna's tables), the only modules that touch them.

Written for Optuna 5.0 (pyproject.toml pins 5.0.x). tests/service/test_optuna_internals.py
pins each assumption below against the installed Optuna, so an upgrade touches these two
modules and those tests, nothing else. What is used, and why:

- RDBStorage's ``engine`` and thread-local ``scoped_session`` (and ``_create_scoped_session``,
  its commit-or-rollback helper): the storage runs on the Database's engine, so a process has
  one connection pool, and the writes below join the storage's own transactions.
- The ORM models of Optuna's tables (``optuna.storages._rdb.models``): heartbeats and user
  attributes as single upserts (Optuna spends a SELECT and a commit on each), and the trial
  counts that budgets and progress are derived from (optuna_tables).
- ``RDBStorage._get_stale_trial_ids``, what ``fail_stale_trials`` asks for stale trials.
- ``optuna.study._tell._tell_with_warning``: how ``Study.optimize`` finishes a trial, without
  the read-back ``Study.tell`` adds; ``Trial(study, trial_id)`` and ``Trial._trial_id``.
- How Optuna's waiting queue pops a trial (``Study._pop_waiting_trial_id``), the heartbeat thread
  (``optuna.storages._heartbeat``; the claim commits a trial's first beat, so the thread
  skips it), the trial cache that ``optuna.storages.get_storage`` wraps
  an RDBStorage in (and its bookkeeping, to add a popped trial), and ``failed_trial``, the
  system attribute that marks a retry.
- Optuna numbers a study's trials 0, 1, 2, ... under a lock on the study's row
  (``count_past_trials``): optuna_tables.budget_stats counts a study's trials by its highest number.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._heartbeat import BaseHeartbeat, HeartbeatThread, get_heartbeat_thread, is_heartbeat_enabled
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Engine, Executable, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, scoped_session, sessionmaker

_UPSERT_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}


class TunedRDBStorage(RDBStorage):
    """Optuna's RDBStorage on a given engine, with fewer round trips, and orphaned trials called stale.

    Round trips (benchmarks/coordination.py): user attributes that belong to a trial's end
    commit with its final state; a heartbeat is one upsert; stale trials are looked for at
    most once per heartbeat interval rather than before every trial.
    """

    def __init__(self, engine: Engine, **heartbeat: Any) -> None:
        url = engine.url.render_as_string(hide_password=False)
        # On the Database's own pool: the constructor's schema-version check opens no connection of its own.
        super().__init__(url, engine_kwargs={"pool": engine.pool}, skip_table_creation=True, **heartbeat)
        self.engine = engine
        self.scoped_session = scoped_session(sessionmaker(bind=engine))
        self._version_manager.engine, self._version_manager.scoped_session = engine, self.scoped_session
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
        # The scoped session is one Session per thread, so Optuna's state change below runs in this
        # transaction and its commit covers the attributes too. The trial is locked first (its row on
        # PostgreSQL, the database on SQLite): if another process has finished it, its attributes stay.
        session = self.scoped_session()
        try:
            if trial_is_running(session, trial_id):
                upsert_user_attrs(session, trial_id, attrs)
            else:
                session.rollback()
            return bool(super().set_trial_state_values(trial_id, state, values))
        except BaseException as exc:
            session.rollback()
            if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
                self._attrs_on_finish[trial_id] = attrs  # for a retry of this call
            raise

    def record_heartbeat(self, trial_id: int) -> None:
        """One upsert per beat (Optuna reads the row first, then writes it)."""
        with _create_scoped_session(self.scoped_session, True) as session:
            upsert_heartbeat(session, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Stale trials of the study, looked for at most once per heartbeat interval per process.

        A trial turns stale only a grace period after its last beat, so looking more often than
        a beat finds nothing new; Optuna looks before every trial it asks for (two queries).
        """
        now = time.monotonic()
        last = self._stale_checked_at.get(study_id)
        if last is not None and self.heartbeat_interval is not None and now - last < self.heartbeat_interval:
            return []
        self._stale_checked_at[study_id] = now
        return [*super()._get_stale_trial_ids(study_id), *self._orphaned_trial_ids(study_id, now)]

    def _orphaned_trial_ids(self, study_id: int, now: float) -> list[int]:
        """RUNNING trials that have had no heartbeat row for a whole grace period.

        A worker whose process died between claiming a trial and its first beat leaves a
        RUNNING trial Optuna never calls stale: it has no beat to be late. Timed on this
        process's monotonic clock, not the trial's start, so clock skew cannot fail a live trial.
        """
        trial, beat = models.TrialModel, models.TrialHeartbeatModel
        has_beat = select(beat.trial_id).where(beat.trial_id == trial.trial_id).exists()
        query = select(trial.trial_id).where(trial.study_id == study_id, trial.state == TrialState.RUNNING, ~has_beat)
        with _create_scoped_session(self.scoped_session) as session:
            beatless = set(session.execute(query).scalars())
        seen = self._beatless_since.get(study_id, {})
        self._beatless_since[study_id] = since = {trial_id: seen.get(trial_id, now) for trial_id in beatless}
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        return sorted(trial_id for trial_id, first in since.items() if now - first >= grace)


def upsert_user_attrs(session: Session, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Set the trial's user attributes (JSON-encoded, as Optuna stores them); commit is the caller's."""
    if not attrs:
        return
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    statement = _user_attr_upsert(session.get_bind().dialect.name)
    if statement is not None:
        session.connection().execute(statement, rows)
        return
    model = models.TrialUserAttributeModel  # no ON CONFLICT (e.g. MySQL): let the ORM merge row by row
    for row in rows:
        existing = session.query(model).filter_by(trial_id=trial_id, key=row["key"]).one_or_none()
        if existing is None:
            session.add(model(**row))
        else:
            existing.value_json = row["value_json"]


def upsert_heartbeat(session: Session, trial_id: int) -> None:
    """Record the trial's heartbeat at the database's clock; commit is the caller's."""
    statement = _heartbeat_upsert(session.get_bind().dialect.name)
    if statement is not None:
        session.connection().execute(statement, {"trial_id": trial_id})
        return
    model = models.TrialHeartbeatModel  # no ON CONFLICT: read, then insert or update
    existing = session.query(model).filter_by(trial_id=trial_id).with_for_update().one_or_none()
    if existing is None:
        session.add(model(trial_id=trial_id))
    else:
        existing.heartbeat = session.execute(select(func.now())).scalar_one()


def trial_is_running(session: Session, trial_id: int) -> bool:
    """Whether the trial is RUNNING, locked so that nobody else can finish it before this transaction ends."""
    model = models.TrialModel
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks and ignores FOR UPDATE; a write takes its database-wide write lock,
        # which is held to the end of the transaction. So write nothing, first.
        session.execute(update(model).where(model.trial_id == trial_id).values(state=model.state))
    query = select(model.state).where(model.trial_id == trial_id).with_for_update()
    return bool(session.execute(query).scalar_one_or_none() == TrialState.RUNNING)


@functools.cache
def _user_attr_upsert(dialect_name: str) -> Executable | None:
    model = models.TrialUserAttributeModel
    return _upsert(dialect_name, model, [model.trial_id, model.key], "value_json")


@functools.cache
def _heartbeat_upsert(dialect_name: str) -> Executable | None:
    model = models.TrialHeartbeatModel
    return _upsert(dialect_name, model, [model.trial_id], "heartbeat", heartbeat=func.current_timestamp())


def _upsert(dialect_name: str, model: Any, keys: list[Any], column: str, **values: Any) -> Executable | None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET column = the new value; None without ON CONFLICT."""
    dialect = _UPSERT_DIALECTS.get(dialect_name)
    if dialect is None:
        return None
    insert = dialect.insert(model).values(**values) if values else dialect.insert(model)
    return insert.on_conflict_do_update(index_elements=keys, set_={column: insert.excluded[column]})


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Optuna's API speaks of trial numbers; its storage of ids)."""
    return int(trial._trial_id)


def trial_handle(study: optuna.Study, claimed_trial_id: int) -> optuna.Trial:
    """The ``optuna.Trial`` an objective is called with, for a trial this process already set RUNNING."""
    return optuna.Trial(study, claimed_trial_id)


def tell(
    study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None
) -> tuple[TrialState, str | None]:
    """Finish a trial as ``Study.optimize`` does; returns the state told and why it failed, if it did.

    ``state`` None: COMPLETE if ``value`` is a finite number, else FAIL. A trial someone else
    finished already is left as it is.
    """
    told, _, failure = _tell_with_warning(study, trial, value, state, skip_if_finished=True, suppress_warning=True)
    return told, failure


def pop_waiting_trial(storage: BaseStorage, candidates: Sequence[int]) -> int | None:
    """Set the first of the WAITING trials ``candidates`` (in queue order, see
    optuna_tables.waiting_trial_ids) RUNNING as Optuna's own queue does, and return its id; None
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


def create_trial(storage: TunedRDBStorage, study_id: int) -> int:
    """Create a RUNNING trial as the storage's ``create_new_trial`` does, without its retry (see
    pop_waiting_trial), and return its id."""
    return int(storage._create_new_trial(study_id)._trial_id)


def cache_claimed_trial(storage: BaseStorage, study_id: int, claimed_trial_id: int) -> None:
    """Tell the trial cache about a trial this process claimed, once the claim has committed.

    The cache must know a trial before parameters are set through it. The claim creates or
    pops the trial on the storage itself (Optuna's pop would read the whole study through the
    cache, under the lock); this adds the one trial, as the cache's ``create_new_trial`` does
    for a trial it creates, and marks it unfinished, as the cache's own read of a running
    trial does, so that later reads refresh it.
    """
    if not isinstance(storage, _CachedStorage):
        return
    claimed = storage._backend.get_trial(claimed_trial_id)
    with storage._lock:
        info = storage._studies.setdefault(study_id, _StudyInfo())
        storage._add_trials_to_cache(study_id, [claimed])
        info.unfinished_trial_ids.add(claimed_trial_id)


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


def upgrade_optuna_schema(url: str, engine_options: dict[str, Any]) -> None:
    """Create Optuna's tables on ``url``, or bring them to this Optuna's head revision."""
    storage = RDBStorage(url, engine_kwargs=engine_options, skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
    finally:
        storage.engine.dispose()  # a one-off: keep no pooled connections


# The storage methods Optuna's trial cache calls by their private names (a trial's suggest, for
# one, writes through _set_trial_param): service/optuna_storage.py retries them like the public ones.
CACHE_BACKEND_CALLS = ("_set_trial_param", "_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")


def trial_cache(storage: RDBStorage) -> BaseStorage:
    """The storage wrapped in Optuna's in-process trial cache, as ``optuna.load_study`` would wrap it."""
    return optuna.storages.get_storage(storage)
