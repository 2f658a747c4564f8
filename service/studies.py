"""Data functions behind the API: one function per operation, keyword-only, no HTTP here.

Each takes the caller's ``session`` and, where Optuna's side is touched too, its ``storage``.
Both draw connections from one pool (service.database), so a function ends its session's
transaction (which hands the connection back) before it calls the storage: a request never
holds one connection while it waits for another.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.budget import Progress, mark_completed_if_spent, records_with_stats
from service.errors import StudyConflictError, StudyExistsError, StudyNotFoundError
from service.models import StudyRecord, StudyStatus
from service.search_strategy import build_pruner, build_sampler
from service.spec import StudySpec

SPEC_ATTR = "hpo_spec"  # the Optuna study user attribute mirroring the spec (shown by optuna-dashboard)

TRANSITIONS = {  # action -> (states it may start from, state it leads to)
    "pause": ({StudyStatus.RUNNING}, StudyStatus.PAUSED),
    "resume": ({StudyStatus.PAUSED, StudyStatus.STOPPED}, StudyStatus.RUNNING),
    "stop": ({StudyStatus.RUNNING, StudyStatus.PAUSED}, StudyStatus.STOPPED),
}


@dataclass(frozen=True)
class StudyView:
    """A study's record with its live progress."""

    record: StudyRecord
    progress: Progress
    optuna_id: int | None  # None while its Optuna study does not exist (being created or deleted)


def create_study(*, session: Session, storage: BaseStorage, spec: StudySpec) -> StudyView:
    """Create the hpo_studies row and its Optuna study (with enqueued configs), or neither.

    The row is committed first, as paused, so that a duplicate name fails before Optuna is
    touched and no worker picks the study up half-made; it turns running once Optuna's side
    exists. (Each side commits on its own: SQLite allows one writer at a time.)
    """
    record = StudyRecord(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=StudyStatus.PAUSED,
        max_trials=spec.max_trials,
        priority=spec.priority,
    )
    session.add(record)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise StudyExistsError(f"a study named {spec.name!r} exists already") from None
    try:
        _create_optuna_study(storage, spec)
    except BaseException as exc:
        duplicate = isinstance(exc, optuna.exceptions.DuplicatedStudyError)
        if not duplicate:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=spec.name, storage=storage)
        session.delete(record)
        session.commit()
        if duplicate:
            raise StudyExistsError(f"an Optuna study named {spec.name!r} exists already") from None
        raise
    record.status = StudyStatus.RUNNING
    session.commit()
    return get_study(session=session, name=spec.name)


def _create_optuna_study(storage: BaseStorage, spec: StudySpec) -> None:
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize",
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
    )
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    for params in spec.enqueue:
        study.enqueue_trial(params)


def get_study(*, session: Session, name: str) -> StudyView:
    """The study called ``name`` with its progress; completes it if its budget is spent."""
    row = session.execute(records_with_stats(name)).first()
    if row is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    view = _view(row)
    session.commit()  # a study whose budget was spent was just marked completed
    return view


def list_studies(*, session: Session) -> list[StudyView]:
    """Every study, newest first, in one query."""
    rows = session.execute(records_with_stats().order_by(StudyRecord.created_at.desc())).all()
    views = [_view(row) for row in rows]
    session.commit()
    return views


def _view(row: Any) -> StudyView:
    progress = Progress.of(row)
    mark_completed_if_spent(row.StudyRecord, progress)
    return StudyView(row.StudyRecord, progress, row.optuna_id)


def study_status(*, session: Session, name: str) -> str | None:
    """The study's status now (None once it is deleted)."""
    return session.execute(select(StudyRecord.status).where(StudyRecord.name == name)).scalar_one_or_none()


def change_status(*, session: Session, name: str, action: str) -> StudyView:
    """Apply pause, resume or stop; StudyConflictError if the study's status does not allow it."""
    sources, target = TRANSITIONS[action]
    record = session.execute(select(StudyRecord).where(StudyRecord.name == name).with_for_update()).scalar_one_or_none()
    if record is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    if record.status not in sources:
        raise StudyConflictError(f"cannot {action} study {name!r}: it is {record.status}")
    record.status = target
    session.commit()
    return get_study(session=session, name=name)


def delete_study(*, session: Session, storage: BaseStorage, name: str) -> None:
    """Remove the study's Optuna study with every trial, then its row."""
    record = get_study(session=session, name=name).record
    with contextlib.suppress(KeyError):  # the Optuna study is gone already if an earlier delete stopped half-way
        optuna.delete_study(study_name=name, storage=storage)
    session.delete(record)
    session.commit()


def list_trials(
    *, session: Session, storage: BaseStorage, name: str, offset: int, limit: int
) -> tuple[int, list[optuna.trial.FrozenTrial]]:
    """One page of the study's trials, by number, and the total count."""
    view = get_study(session=session, name=name)
    if view.optuna_id is None:
        return 0, []
    trials = storage.get_all_trials(view.optuna_id, deepcopy=False)
    return len(trials), trials[offset : offset + limit]


def best_trial(*, session: Session, storage: BaseStorage, name: str) -> dict[str, Any]:
    """The best completed trial: number, value, params, the config that reproduces it, metrics."""
    view = get_study(session=session, name=name)
    try:
        if view.optuna_id is None:
            raise ValueError("no Optuna study")
        best = storage.get_best_trial(view.optuna_id)
    except ValueError:  # Optuna's answer when no trial has completed
        raise StudyConflictError(f"study {name!r} has no completed trial yet") from None
    spec = StudySpec.model_validate(view.record.spec)
    return {
        "trial_number": best.number,
        "value": best.value,
        "params": best.params,
        "config": best.user_attrs.get("config") or spec.training_config(best.params).model_dump(mode="json"),
        "metrics": best.user_attrs.get("metrics", {}),
    }


def trial_as_dict(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial as the API shows it."""
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": trial.params,
        "value": trial.value,
        "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "user_attrs": json.loads(json.dumps(trial.user_attrs, default=str)),
        "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(trial),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }
