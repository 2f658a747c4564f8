"""Every trial of a study in one row each, with only what a report's aggregate plots need, read
with plain SQL in one statement (plus one for the failures' errors); a sample of trials as an
in-memory study, for Optuna's plots and importances.

Loading 20,000 trials as Optuna's FrozenTrial (every parameter, attribute and intermediate value)
takes seconds; the report reads these rows for every trial and whole trials only for the few
it draws in full (service/optuna/pages.trials_by_ids).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import optuna
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, Integer, bindparam, cast, func, select
from sqlalchemy.sql.elements import BindParameter

RESUMED_FROM = "resumed_from_epoch"  # user attribute of a retry that resumed from a checkpoint (worker/objective.py)
DEVICE = "device"  # user attribute: "cpu" or "cuda", the kind of device the trial trained on
# Optuna logs each in-memory study it creates; a report makes one per plot of Optuna's
logging.getLogger("optuna.storages._in_memory").setLevel(logging.WARNING)
_STATE_NAMES = {state: state.name.lower() for state in TrialState}


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a third of reading 20,000 rows
class TrialSummary:
    """One trial as a report's aggregates see it."""

    trial_id: int
    number: int
    state: str  # complete, pruned, fail, running, waiting
    value: float | None  # a complete trial's validation accuracy
    start: datetime | None
    end: datetime | None
    epochs_reported: int  # epochs whose validation accuracy reached Optuna
    resumed_from: int  # epochs a retry took over from its checkpoint (not trained by this trial)
    device: str  # "cpu", "cuda", or "unknown" for trials from before it was recorded

    @property
    def epochs_trained(self) -> int:
        """The epochs this trial trained itself."""
        return max(self.epochs_reported - self.resumed_from, 0)

    @property
    def seconds(self) -> float:
        """Its wall time from start to end (0 until it has ended)."""
        return (self.end - self.start).total_seconds() if self.start and self.end else 0.0


def trial_summaries(connection: Connection, study_id: int) -> list[TrialSummary]:
    """Every trial of the study, by number."""
    devices: dict[str | None, str] = {None: "unknown"}  # the attribute's JSON, decoded once per distinct value
    summaries = []
    for row in connection.execute(_SUMMARIES, {"study_id": study_id}):
        device = devices.get(row.device)
        if device is None:
            device = devices[row.device] = str(json.loads(row.device))
        summaries.append(
            TrialSummary(
                trial_id=row.trial_id,
                number=row.number,
                state=_STATE_NAMES[row.state],
                value=row.value if row.state == TrialState.COMPLETE else None,
                start=row.datetime_start,
                end=row.datetime_complete,
                epochs_reported=row.reported or 0,
                resumed_from=row.resumed or 0,
                device=device,
            )
        )
    return summaries


def best_trial_ids(connection: Connection, study_id: int, limit: int) -> list[int]:
    """The ids of the study's ``limit`` best complete trials, best first (the earliest of equals first)."""
    return list(connection.execute(_BEST, {"study_id": study_id, "limit": limit}).scalars())


def in_memory_study(trials: Sequence[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding ``trials`` (their parameters and values only: the in-memory storage
    deep-copies each trial it is given, and a trial's attributes are most of its size), for Optuna's
    plots and importances."""
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            FrozenTrial(
                number=t.number,
                state=t.state,
                value=None,
                values=t.values,
                datetime_start=t.datetime_start,
                datetime_complete=t.datetime_complete,
                params=t.params,
                distributions=t.distributions,
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=t.number,
            )
            for t in trials
        ]
    )
    return study


def trial_errors(connection: Connection, study_id: int, limit: int) -> list[tuple[int, str]]:
    """The last ``limit`` failed trials' numbers and errors, newest first."""
    rows = connection.execute(_ERRORS, {"study_id": study_id, "limit": limit})
    return [(row.number, json.loads(row.value_json) if row.value_json else "") for row in rows]


# Table columns, not the ORM classes: a model's attribute can be a Python property (TrialModel.number is).
_TRIAL, _VALUE = models.TrialModel.__table__, models.TrialValueModel.__table__
_STEP, _ATTR = models.TrialIntermediateValueModel.__table__, models.TrialUserAttributeModel.__table__
_STUDY: BindParameter[int] = bindparam("study_id")
_RESUMED, _DEVICE, _ERROR = _ATTR.alias("resumed"), _ATTR.alias("device"), _ATTR.alias("error")
_REPORTED = (
    select(_STEP.c.trial_id, func.count().label("reported"))
    .join(_TRIAL, _TRIAL.c.trial_id == _STEP.c.trial_id)
    .where(_TRIAL.c.study_id == _STUDY)
    .group_by(_STEP.c.trial_id)
    .subquery()
)
_SUMMARIES = (
    select(
        _TRIAL.c.trial_id,
        _TRIAL.c.number,
        _TRIAL.c.state,
        _TRIAL.c.datetime_start,
        _TRIAL.c.datetime_complete,
        _VALUE.c.value,
        _REPORTED.c.reported,
        cast(_RESUMED.c.value_json, Integer).label("resumed"),
        _DEVICE.c.value_json.label("device"),
    )
    .select_from(_TRIAL)
    .outerjoin(_VALUE, (_VALUE.c.trial_id == _TRIAL.c.trial_id) & (_VALUE.c.objective == 0))
    .outerjoin(_REPORTED, _REPORTED.c.trial_id == _TRIAL.c.trial_id)
    .outerjoin(_RESUMED, (_RESUMED.c.trial_id == _TRIAL.c.trial_id) & (_RESUMED.c.key == RESUMED_FROM))
    .outerjoin(_DEVICE, (_DEVICE.c.trial_id == _TRIAL.c.trial_id) & (_DEVICE.c.key == DEVICE))
    .where(_TRIAL.c.study_id == _STUDY)
    .order_by(_TRIAL.c.number)
)
_ERRORS = (
    select(_TRIAL.c.number, _ERROR.c.value_json)
    .select_from(_TRIAL)
    .outerjoin(_ERROR, (_ERROR.c.trial_id == _TRIAL.c.trial_id) & (_ERROR.c.key == "error"))
    .where(_TRIAL.c.study_id == _STUDY, _TRIAL.c.state == TrialState.FAIL)
    .order_by(_TRIAL.c.number.desc())
    .limit(bindparam("limit"))
)
_BEST = (
    select(_TRIAL.c.trial_id)
    .join(_VALUE, (_VALUE.c.trial_id == _TRIAL.c.trial_id) & (_VALUE.c.objective == 0))
    .where(_TRIAL.c.study_id == _STUDY, _TRIAL.c.state == TrialState.COMPLETE)
    .order_by(_VALUE.c.value.desc(), _TRIAL.c.number)
    .limit(bindparam("limit"))
)
