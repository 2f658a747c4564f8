"""Single-statement writes to Optuna's trial tables, for use inside a transaction we already hold.

Optuna's RDBStorage spends a transaction (a SELECT of the trial, the write, a commit) on every
user attribute and every heartbeat. The worker writes a heartbeat and an attribute when it
claims a trial, and three more attributes when the trial ends; with short trials on a busy
database those round trips were the main cost of coordination (benchmarks/coordination.py).
These helpers write the same rows with one upsert each, so callers fold them into a
transaction they commit anyway: the study lock's release, or the trial's final state. The
statements are built once per dialect, so SQLAlchemy compiles them once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import Executable, Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_UPSERT_DIALECTS = {"postgresql": postgresql, "sqlite": sqlite}


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


def running_without_heartbeat(study_id: int) -> Select[int]:
    """Ids of the study's RUNNING trials that have no heartbeat row."""
    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    has_beat = select(beat.trial_id).where(beat.trial_id == trial.trial_id).exists()
    return select(trial.trial_id).where(trial.study_id == study_id, trial.state == TrialState.RUNNING, ~has_beat)


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
