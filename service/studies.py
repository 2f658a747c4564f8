"""Data functions behind the API: one function per operation, keyword-only, no HTTP here."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import optuna
from sqlalchemy import select, text

from service.budget import Progress, mark_completed_if_spent, optuna_study_id, progress
from service.database import StudyExistsError, session_scope
from service.models import StudyRecord, StudyStatus
from service.spec import StudySpec
from service.storage import build_pruner, build_sampler, get_storage

SPEC_ATTR = "hpo_spec"  # the Optuna study user attribute mirroring the spec (shown by optuna-dashboard)

TRANSITIONS = {  # action -> (states it may start from, state it leads to)
    "pause": ({StudyStatus.RUNNING}, StudyStatus.PAUSED),
    "resume": ({StudyStatus.PAUSED, StudyStatus.STOPPED}, StudyStatus.RUNNING),
    "stop": ({StudyStatus.RUNNING, StudyStatus.PAUSED}, StudyStatus.STOPPED),
}


class StudyNotFoundError(Exception):
    """No study of that name."""


class StudyConflictError(Exception):
    """The request clashes with the study's state (e.g. no completed trial yet)."""


@dataclass(frozen=True)
class StudyView:
    """A study's record with its live progress."""

    record: StudyRecord
    progress: Progress
    best_value: float | None
    optuna_id: int | None


def create_study(*, url: str, spec: StudySpec) -> StudyView:
    """Create the hpo_studies row and its Optuna study (with enqueued configs), or neither.

    The row is committed first, as paused, so that a duplicate name fails before Optuna is
    touched and no worker picks the study up half-made; it turns running once Optuna's side
    exists. (Each side commits on its own: SQLite allows one writer at a time.)
    """
    storage = get_storage(url)
    with session_scope(url) as session:
        session.add(
            StudyRecord(
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                status=StudyStatus.PAUSED,
                max_trials=spec.max_trials,
                priority=spec.priority,
            )
        )
    try:
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
    except BaseException as exc:
        _undo_create(url, spec.name, optuna_existed=isinstance(exc, optuna.exceptions.DuplicatedStudyError))
        if isinstance(exc, optuna.exceptions.DuplicatedStudyError):
            raise StudyExistsError(f"an Optuna study named {spec.name!r} exists already") from None
        raise
    with session_scope(url) as session:
        _record(session, spec.name).status = StudyStatus.RUNNING
    return get_study(url=url, name=spec.name)


def _undo_create(url: str, name: str, *, optuna_existed: bool) -> None:
    if not optuna_existed:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=get_storage(url))
    with session_scope(url) as session:
        session.delete(_record(session, name))


def get_study(*, url: str, name: str) -> StudyView:
    """The study called ``name`` with its progress; completes it if its budget is spent."""
    with session_scope(url) as session:
        record = _record(session, name)
        p = progress(session, name)
        mark_completed_if_spent(session, record, p)
        best = _best_value(session, name)
        return StudyView(record, p, best, optuna_study_id(session, name))


def list_studies(*, url: str) -> list[StudyView]:
    """Every study, newest first."""
    with session_scope(url) as session:
        names = session.execute(select(StudyRecord.name).order_by(StudyRecord.created_at.desc())).scalars().all()
    return [get_study(url=url, name=name) for name in names]


def change_status(*, url: str, name: str, action: str) -> StudyView:
    """Apply pause, resume or stop; StudyConflictError if the study's status does not allow it."""
    sources, target = TRANSITIONS[action]
    with session_scope(url) as session:
        record = _record(session, name, lock=True)
        if record.status not in sources:
            raise StudyConflictError(f"cannot {action} study {name!r}: it is {record.status}")
        record.status = target
    return get_study(url=url, name=name)


def delete_study(*, url: str, name: str) -> None:
    """Remove the study's Optuna study with every trial, then its row."""
    with session_scope(url) as session:
        _record(session, name)
    with contextlib.suppress(KeyError):  # the Optuna study is gone already if an earlier delete stopped half-way
        optuna.delete_study(study_name=name, storage=get_storage(url))
    with session_scope(url) as session:
        session.delete(_record(session, name))


def list_trials(*, url: str, name: str, offset: int, limit: int) -> tuple[int, list[optuna.trial.FrozenTrial]]:
    """One page of the study's trials, by number, and the total count."""
    get_study(url=url, name=name)
    trials = optuna.load_study(study_name=name, storage=get_storage(url)).get_trials(deepcopy=False)
    return len(trials), trials[offset : offset + limit]


def best_trial(*, url: str, name: str) -> dict[str, Any]:
    """The best completed trial: number, value, params, the config that reproduces it, metrics."""
    view = get_study(url=url, name=name)
    study = optuna.load_study(study_name=name, storage=get_storage(url))
    try:
        best = study.best_trial
    except ValueError:
        raise StudyConflictError(f"study {name!r} has no completed trial yet") from None
    spec = StudySpec.model_validate(view.record.spec)
    config = best.user_attrs.get("config") or spec.training_config(best.params).model_dump(mode="json")
    metric_keys = ("val_accuracy", "test_accuracy", "epochs", "seconds", "images_per_second", "device", "threads")
    return {
        "trial_number": best.number,
        "value": best.value,
        "params": best.params,
        "config": config,
        "metrics": best.user_attrs.get("metrics")
        or {k: best.user_attrs[k] for k in metric_keys if k in best.user_attrs},
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
        "retry_of": trial.system_attrs.get("failed_trial"),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }


def _record(session: Any, name: str, *, lock: bool = False) -> StudyRecord:
    query = select(StudyRecord).where(StudyRecord.name == name)
    if lock:
        query = query.with_for_update()
    record = session.execute(query).scalar_one_or_none()
    if record is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    return record


def _best_value(session: Any, name: str) -> float | None:
    row = session.execute(
        text(
            "SELECT MAX(v.value) FROM trial_values v JOIN trials t ON v.trial_id = t.trial_id "
            "JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = :n AND t.state = 'COMPLETE'"
        ),
        {"n": name},
    ).scalar_one_or_none()
    return None if row is None else float(row)
