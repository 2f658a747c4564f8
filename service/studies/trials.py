"""Reads of a study's trials behind the API: a page of them, and the best one with its config.

Like service/studies/lifecycle.py (whose conventions these follow), keyword-only functions with no HTTP:
each costs the same few queries however many trials the study holds.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from sqlalchemy import bindparam
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from service.db.models import IN_PROGRESS, StudyRecord
from service.errors import StudyConflictError, StudyNotFoundError
from service.optuna.pages import trial_by_id, trials_page
from service.scheduling.budget import Budget, records_with_budget
from service.spec.schema import StudySpec
from service.studies.lifecycle import study_status
from service.studies.tallies import StudyTallies


def list_trials(*, session: Session, name: str, offset: int, limit: int) -> tuple[int, list[optuna.trial.FrozenTrial]]:
    """One page of the study's trials, by number, and the total count: a page costs the same
    few queries however many trials the study holds (an empty page if the study goes meanwhile)."""
    _record, budget, optuna_id = _record_and_budget(session, name)
    if optuna_id is None:
        return 0, []
    return budget.trials, trials_page(session.connection(), optuna_id, offset, limit)


def study_spec(*, session: Session, name: str) -> StudySpec:
    """The study's spec; StudyNotFoundError if there is no such study."""
    record, _budget, _optuna_id = _record_and_budget(session, name)
    return StudySpec.model_validate(record.spec)


def best_trial(*, session: Session, name: str, tallies: StudyTallies) -> dict[str, Any]:
    """The best completed trial: number, value, params, the config that reproduces it, metrics.

    ``tallies`` finds it from the trials finished since its last look, not from every trial's value.
    """
    record, _budget, optuna_id = _record_and_budget(session, name)
    best_id = None if optuna_id is None else tallies.best_trial_id(session, optuna_id, record.created_at)
    if best_id is None:
        raise StudyConflictError(f"study {name!r} has no completed trial yet")
    best = trial_by_id(session.connection(), best_id)
    if best is None:
        raise _gone_or(session, name)
    config = best.user_attrs.get("config")
    if config is None:  # trials run before configs were recorded
        config = StudySpec.model_validate(record.spec).training_config(best.params).model_dump(mode="json")
    return {
        "trial_number": best.number,
        "value": best.value,
        "params": best.params,
        "config": config,
        "metrics": best.user_attrs.get("metrics", {}),
    }


_NAME: BindParameter[str] = bindparam("study_name")
_SHOWN_WITH_BUDGET = records_with_budget(_NAME).where(StudyRecord.status.not_in(IN_PROGRESS))  # built once


def _record_and_budget(session: Session, name: str) -> tuple[StudyRecord, Budget, int | None]:
    """The study's record, its budget counts and Optuna id, read from indexes (no per-state
    counts: a read that needs only these does not scan the study); StudyNotFoundError if none."""
    row = session.execute(_SHOWN_WITH_BUDGET, {"study_name": name}).first()
    if row is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    return row.StudyRecord, Budget.of(row), row.optuna_id


def _gone_or(session: Session, name: str) -> Exception:
    """StudyNotFoundError if the study was deleted meanwhile, else a conflict naming the race."""
    if study_status(session=session, name=name) in (None, *IN_PROGRESS):
        return StudyNotFoundError(f"no study named {name!r}")
    return StudyConflictError(f"study {name!r} changed while it was read; try again")


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
        "error": trial.user_attrs.get("error"),  # why a FAIL failed (worker.runner records it)
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }
