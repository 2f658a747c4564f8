"""Data functions behind the API: one function per operation, keyword-only, no HTTP here.

Each takes the caller's ``session`` and, where Optuna's side is touched too, its ``storage``.
Both draw connections from one pool (service.db.database), so a function ends its session's
transaction (which hands the connection back) before it calls the storage: a request never
holds one connection while it waits for another.
"""

from __future__ import annotations

import contextlib
import warnings
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.artifacts import remove_study_artifacts, studies_starting_from
from service.db.models import IN_PROGRESS, StudyRecord, StudyStatus
from service.errors import StudyConflictError, StudyExistsError, StudyNotFoundError
from service.notify.targets import check_receivers
from service.scheduling.stopping import paused_since, resumed
from service.settings import get_settings
from service.spec.references import hold_init_study, pin_references
from service.spec.schema import StudySpec
from service.spec.strategy import build_pruner, build_sampler

SPEC_ATTR = "hpo_spec"  # the Optuna study user attribute mirroring the spec (shown by optuna-dashboard)
OBJECTIVE_NAME = "val_accuracy"  # what a trial's value is: optuna-dashboard shows it instead of "Objective 0"
# Experimental since Optuna 3.2 and what optuna-dashboard reads names from: one warning per process says nothing.
warnings.filterwarnings("ignore", r".*set_metric_names is experimental", optuna.exceptions.ExperimentalWarning)

TRANSITIONS = {  # action -> (states it may start from, state it leads to)
    "pause": ({StudyStatus.RUNNING}, StudyStatus.PAUSED),
    "resume": ({StudyStatus.PAUSED, StudyStatus.STOPPED}, StudyStatus.RUNNING),
    "stop": ({StudyStatus.RUNNING, StudyStatus.PAUSED}, StudyStatus.STOPPED),
}


def create_study(*, session: Session, storage: BaseStorage, spec: StudySpec) -> StudySpec:
    """Create the hpo_studies row and its Optuna study (with enqueued configs), or neither; returns
    the spec as stored (with its references pinned). Read the study back with service.studies.read.

    The row is committed first, as ``creating``, so that a duplicate name fails before Optuna
    is touched and nobody sees the study half-made; it turns running once Optuna's side exists.
    (Each side commits on its own: SQLite allows one writer at a time.) If this process dies or
    the database goes away on the way, the API's sweep removes what was left. What the spec
    names outside itself (its ``init``, ``enqueue_from``) is checked and pinned first
    (service.spec.references; SpecError, nothing written).
    """
    settings = get_settings()
    check_receivers(spec, settings.notify_allow)  # SpecError: a notify URL that may not be called
    spec = pin_references(session, storage, spec, settings)
    session.commit()  # the checks' reads end here: a failed insert below rolls back to a clean slate
    hold_init_study(session, spec, settings.artifact_dir)  # until the insert commits (a racing delete sees it)
    record = StudyRecord(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=StudyStatus.CREATING,
        max_trials=spec.max_trials,
        priority=spec.priority,
    )
    session.add(record)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise StudyExistsError(_taken(session, spec.name)) from None
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
    return spec


def _taken(session: Session, name: str) -> str:
    status = study_status(session=session, name=name)
    if status in IN_PROGRESS:
        work = "created" if status == StudyStatus.CREATING else "deleted"
        return f"a study named {name!r} is being {work}; try again shortly"
    return f"a study named {name!r} exists already"


def _create_optuna_study(storage: BaseStorage, spec: StudySpec) -> None:
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="maximize",
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
    )
    study.set_metric_names([OBJECTIVE_NAME])
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    for params in spec.enqueue:
        study.enqueue_trial(params)


def study_status(*, session: Session, name: str) -> str | None:
    """The study's status now (None once it is deleted)."""
    return session.execute(select(StudyRecord.status).where(StudyRecord.name == name)).scalar_one_or_none()


def change_status(*, session: Session, name: str, action: str) -> StudyRecord:
    """Apply pause, resume or stop and return the record as changed; StudyConflictError if the
    study's status does not allow it."""
    sources, target = TRANSITIONS[action]
    query = select(StudyRecord).where(StudyRecord.name == name, StudyRecord.status.not_in(IN_PROGRESS))
    record = session.execute(query.with_for_update()).scalar_one_or_none()
    if record is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    if record.status not in sources:
        raise StudyConflictError(f"cannot {action} study {name!r}: it is {record.status}")
    now = datetime.now(UTC)
    if target == StudyStatus.RUNNING:
        resumed(record, now)  # stop_when.max_wall_clock_s leaves paused and stopped time out
    else:
        paused_since(record, now)
    record.status = target
    record.status_reason = None  # a user's decision replaces the failure guard's (service/scheduling/failures.py)
    record.consecutive_failures = 0
    session.commit()
    return record


def delete_study(*, session: Session, storage: BaseStorage, name: str, artifact_root: Path) -> None:
    """Remove the study's Optuna study with every trial, then its row, then its artifacts.

    The row is marked ``deleting`` first, in one statement: of several concurrent deletes one
    wins and the others find no study (404). If this process dies half-way, the API's sweep
    finishes the deletion. StudyConflictError (409) while another study starts from this one's
    weights (``init: {kind: study}``): deleting them would fail its trials and its best config.
    """
    session.execute(select(StudyRecord.id).where(StudyRecord.name == name).with_for_update())
    dependents = studies_starting_from(session, name)  # after the lock: a create that held it is in
    if dependents:
        session.rollback()
        raise StudyConflictError(
            f"cannot delete study {name!r}: study {dependents[0]!r} starts from its weights (init); delete that first"
        )
    mark = (
        update(StudyRecord)
        .where(StudyRecord.name == name, StudyRecord.status.not_in(IN_PROGRESS))
        .values(status=StudyStatus.DELETING)  # updated_at too (its onupdate): the sweep times it
    )
    marked = session.connection().execute(mark).rowcount
    session.commit()
    if not marked:
        raise StudyNotFoundError(f"no study named {name!r}")
    remove_study(session=session, storage=storage, name=name, artifact_root=artifact_root)


def remove_study(*, session: Session, storage: BaseStorage, name: str, artifact_root: Path) -> None:
    """Delete the Optuna study called ``name`` (if any), then the row and its artifacts (if any)."""
    identity = session.execute(
        select(StudyRecord.id, StudyRecord.created_at).where(StudyRecord.name == name)
    ).one_or_none()
    with contextlib.suppress(KeyError):  # gone already: an earlier attempt stopped half-way
        optuna.delete_study(study_name=name, storage=storage)
    session.execute(delete(StudyRecord).where(StudyRecord.name == name))
    session.commit()
    if identity is not None:
        remove_study_artifacts(artifact_root, *identity)
