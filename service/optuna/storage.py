"""Optuna's storage as the service tunes it. Everything this project knows about Optuna's insides
lives in service/optuna/: this module (the storage), trials.py (claiming and running one trial),
tables.py and pages.py (SQL reads of Optuna's tables) and resilient.py (retries, the stale-trial
callback). tests/service/test_optuna_boundary.py fails if any other module uses a private name.

Written for Optuna 5.0 (pyproject.toml pins 5.0.x). tests/service/test_optuna_internals.py
pins each assumption below against the installed Optuna, so an upgrade touches this package
and those tests, nothing else. What is used, and why:

- RDBStorage's ``engine`` and thread-local ``scoped_session`` (and ``_create_scoped_session``,
  its commit-or-rollback helper): the storage runs on the Database's engine and pool, and the
  writes below join the storage's own transactions; the claim makes the storage's calls join
  its transaction (trials.storage_joins).
- The ORM models of Optuna's tables (``optuna.storages._rdb.models``): heartbeats and user
  attributes as single upserts (Optuna spends a SELECT and a commit on each), and the trial
  counts that budgets and progress are derived from (tables.py).
- ``RDBStorage._version_manager`` (``get_current_version``, ``get_head_version``): the schema
  check, done here on one connection (Optuna's holds a transaction open while it opens a second).
- ``RDBStorage._get_stale_trial_ids``, what ``fail_stale_trials`` asks for stale trials, and
  ``RDBStorage._set_trial_intermediate_value_without_commit``, Optuna's report of an epoch, to
  write the epoch's learning curve in its transaction (``set_user_attrs_on_report``).
- ``optuna.study._tell._tell_with_warning``: how ``Study.optimize`` finishes a trial, without
  the read-back ``Study.tell`` adds; ``Trial(study, trial_id)`` and ``Trial._trial_id``;
  ``RDBStorage._create_new_trial`` (the creation without our retry) (trials.py).
- Optuna's trial cache (``_CachedStorage``), subclassed as the worker's ``TrialCache``
  (trial_cache.py), which answers the two reads of a running trial that Optuna's ``Trial()`` and
  its tell make from the trial as this process holds it (``Trial._get_latest_trial``).
- How Optuna's waiting queue pops a trial (``Study._pop_waiting_trial_id``), the heartbeat thread
  (``optuna.storages._heartbeat``; the claim commits a trial's first beat, so the thread
  skips it), the trial cache that ``optuna.storages.get_storage`` wraps
  an RDBStorage in (and its bookkeeping, to add a claimed trial), and ``failed_trial``, the
  system attribute that marks a retry.
- optuna-dashboard's note attributes (``optuna_dashboard._note``: ``note_ver_key``, ``split_body``):
  a trial's note is written blind, in the transaction that finishes it (``set_note_on_finish``).
- Optuna numbers a study's trials 0, 1, 2, ... under a lock on the study's row
  (``count_past_trials``): tables.budget_stats counts a study's trials by its highest number.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from optuna_dashboard._note import note_ver_key, split_body
from sqlalchemy import Engine, Insert, func, select, update
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
        # The constructor's engine checks the schema version on the Database's own pool, so it opens
        # no connection of its own. Creating it adds that engine's connect listeners to the pool:
        # build the storage before other threads use the pool (the API does so at start-up).
        # Optuna's own compatibility check reads the schema version on a second connection while its
        # first holds a transaction: behind PgBouncer (transaction mode, few servers) slots starting
        # together each held one server and waited for another. check_schema_version uses one.
        super().__init__(
            url,
            engine_kwargs={"pool": engine.pool},
            skip_compatibility_check=True,
            skip_table_creation=True,
            **heartbeat,
        )
        self.engine = engine
        self.scoped_session = scoped_session(sessionmaker(bind=engine))
        self._version_manager.engine, self._version_manager.scoped_session = engine, self.scoped_session
        self.check_schema_version()
        self._stale_checked_at: dict[int, float] = {}  # study id -> time.monotonic() of the last look
        self._attrs_on_finish: dict[int, dict[str, Any]] = {}  # trial id -> user attributes to write then
        self._notes_on_finish: dict[int, tuple[int, dict[str, Any]]] = {}  # trial id -> (study id, note attributes)
        self._attrs_on_report: dict[
            int, dict[str, Any]
        ] = {}  # trial id -> user attributes to write with its next report
        self._beatless_since: dict[int, dict[int, float]] = {}  # study id -> {beatless trial id: first seen}

    def check_schema_version(self) -> None:
        """Raise RuntimeError unless Optuna's tables are at this Optuna's schema revision (one connection)."""
        current = self._version_manager.get_current_version()
        head = self._version_manager.get_head_version()
        if current != head:
            raise RuntimeError(
                f"Optuna's tables are at schema revision {current}; optuna {optuna.__version__} needs {head}. "
                "Run `hpo migrate` to upgrade them (or install the optuna that wrote them)."
            )

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set several user attributes of a running trial in one transaction."""
        with _create_scoped_session(self.scoped_session, True) as session:
            upsert_user_attrs(session, trial_id, attrs)

    def set_user_attrs_on_finish(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Write these user attributes in the same transaction that finishes the trial."""
        self._attrs_on_finish.setdefault(trial_id, {}).update(attrs)

    def set_user_attrs_on_report(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Write these user attributes in the transaction of the trial's next intermediate value
        (an epoch's curve goes with its report: no transaction of its own)."""
        self._attrs_on_report.setdefault(trial_id, {}).update(attrs)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        """Optuna's report of an epoch, carrying the attributes set with ``set_user_attrs_on_report``:
        Optuna's own write first (it refuses a finished trial before anything is written), then the
        attributes, one commit."""
        attrs = self._attrs_on_report.pop(trial_id, None)
        if not attrs:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
            return
        try:
            with _create_scoped_session(self.scoped_session, True) as session:
                self._set_trial_intermediate_value_without_commit(session, trial_id, step, intermediate_value)
                upsert_user_attrs(session, trial_id, attrs)
        except BaseException as exc:
            if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):  # for a retry of this call
                self._attrs_on_report[trial_id] = {**attrs, **self._attrs_on_report.get(trial_id, {})}
            raise

    def set_note_on_finish(self, study_id: int, trial_id: int, body: str) -> None:
        """Write the trial's optuna-dashboard note (Markdown) in the transaction that finishes it.

        optuna-dashboard's ``save_note`` reads every system attribute of the study to number the
        note's version and clear an older one: on a study of 20,000 noted trials, each finish would
        read them all. A worker writes a trial's note once, so it is version 1 with nothing to clear:
        the same attributes, written blind."""
        self._notes_on_finish[trial_id] = (study_id, {note_ver_key(trial_id): 1, **split_body(body, trial_id)})

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """Optuna's state change, carrying the attributes set with ``set_user_attrs_on_finish`` and
        the note set with ``set_note_on_finish``."""
        attrs = self._attrs_on_finish.pop(trial_id, None) if state.is_finished() else None
        note = self._notes_on_finish.pop(trial_id, None) if state.is_finished() else None
        if not attrs and not note:
            return bool(super().set_trial_state_values(trial_id, state, values))
        # The scoped session is one Session per thread, so Optuna's state change below runs in this
        # transaction and its commit covers the attributes too. The trial is locked first (its row on
        # PostgreSQL, the database on SQLite): if another process has finished it, its attributes stay.
        session = self.scoped_session()
        try:
            if trial_is_running(session, trial_id):
                upsert_user_attrs(session, trial_id, attrs or {})
                if note:
                    upsert_study_system_attrs(session, *note)
            else:
                session.rollback()
            return bool(super().set_trial_state_values(trial_id, state, values))
        except BaseException as exc:
            session.rollback()
            if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):  # for a retry of this call
                if attrs:
                    self._attrs_on_finish[trial_id] = attrs
                if note:
                    self._notes_on_finish[trial_id] = note
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
    _upsert_attrs(session, models.TrialUserAttributeModel, {"trial_id": trial_id}, attrs)


def upsert_study_system_attrs(session: Session, study_id: int, attrs: Mapping[str, Any]) -> None:
    """Set system attributes of the study (JSON-encoded, as Optuna stores them); commit is the caller's."""
    _upsert_attrs(session, models.StudySystemAttributeModel, {"study_id": study_id}, attrs)


def _upsert_attrs(session: Session, model: Any, owner: dict[str, int], attrs: Mapping[str, Any]) -> None:
    """Upsert ``attrs`` as rows (owner, key, value_json) of ``model``, an attribute table of Optuna's."""
    if not attrs:
        return
    rows = [{**owner, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    statement = _attr_upsert(session.get_bind().dialect.name, model, *owner)
    if statement is not None:  # one multi-row INSERT: a list of parameters would be a round trip per row
        session.connection().execute(statement.values(rows))
        return
    for row in rows:  # no ON CONFLICT (e.g. MySQL): let the ORM merge row by row
        existing = session.query(model).filter_by(**owner, key=row["key"]).one_or_none()
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
def _attr_upsert(dialect_name: str, model: Any, owner: str) -> Insert | None:
    return _upsert(dialect_name, model, [getattr(model, owner), model.key], "value_json")


@functools.cache
def _heartbeat_upsert(dialect_name: str) -> Insert | None:
    model = models.TrialHeartbeatModel
    return _upsert(dialect_name, model, [model.trial_id], "heartbeat", heartbeat=func.current_timestamp())


def _upsert(dialect_name: str, model: Any, keys: list[Any], column: str, **values: Any) -> Insert | None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET column = the new value; None without ON CONFLICT."""
    dialect = _UPSERT_DIALECTS.get(dialect_name)
    if dialect is None:
        return None
    insert = dialect.insert(model).values(**values) if values else dialect.insert(model)
    return insert.on_conflict_do_update(index_elements=keys, set_={column: insert.excluded[column]})


def upgrade_optuna_schema(url: str, engine_options: dict[str, Any]) -> None:
    """Create Optuna's tables on ``url``, or bring them to this Optuna's head revision."""
    storage = RDBStorage(url, engine_kwargs=engine_options, skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
    finally:
        storage.engine.dispose()  # a one-off: keep no pooled connections


# The storage methods Optuna's trial cache calls by their private names (a trial's suggest, for
# one, writes through _set_trial_param): service/optuna/resilient.py retries them like the public ones.
CACHE_BACKEND_CALLS = ("_set_trial_param", "_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")
