"""A study's figures for its stopping rules (service/scheduling/stopping.py), read from Optuna's
tables in aggregate: its best value, its finished trials and their summed durations, its first
start, and the best before its last N finished trials. Each is one statement over the study's
trials (on the (study_id, state) index), whatever their number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import Select, and_, func, select, tuple_
from sqlalchemy.orm import Session

from service.optuna.tables import trial_seconds

_TRIAL, _VALUE = models.TrialModel.__table__, models.TrialValueModel.__table__
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class StopStats:
    """What the rules are checked against, read at one moment."""

    best: float | None
    best_before_last: float | None  # the best before the last ``last`` finished trials (None: no complete one)
    finished: int
    compute_s: float  # the finished trials' durations, summed
    first_start: datetime | None  # naive, in the local time Optuna writes (datetime.now())


def stop_stats(session: Session, study_id: int, last: int | None) -> StopStats:
    """The study's figures; ``last``: how many of the latest finished trials a plateau looks at (None: no plateau)."""
    trial = _TRIAL.c
    finished = and_(trial.study_id == study_id, trial.state.in_(FINISHED))
    totals = session.execute(
        select(func.count(), func.sum(trial_seconds(session.get_bind().dialect.name)))
        .select_from(_TRIAL)
        .where(finished)
    ).one()
    first_start = session.execute(select(func.min(trial.datetime_start)).where(trial.study_id == study_id)).scalar()
    best_before = None
    if last is not None and totals[0] >= last:
        cutoff = session.execute(
            select(trial.datetime_complete, trial.trial_id)
            .where(finished)
            .order_by(trial.datetime_complete.desc(), trial.trial_id.desc())
            .offset(last - 1)
            .limit(1)
        ).one()  # the oldest of the last ``last`` finished trials
        earlier = tuple_(trial.datetime_complete, trial.trial_id) < tuple_(*cutoff)
        best_before = session.execute(_best(study_id).where(earlier)).scalar()
    return StopStats(
        best=session.execute(_best(study_id)).scalar(),
        best_before_last=best_before,
        finished=int(totals[0]),
        compute_s=float(totals[1] or 0.0),
        first_start=first_start,
    )


def _best(study_id: int) -> Select[Any]:
    return (
        select(func.max(_VALUE.c.value))
        .select_from(_TRIAL.join(_VALUE, _VALUE.c.trial_id == _TRIAL.c.trial_id))
        .where(_TRIAL.c.study_id == study_id, _TRIAL.c.state == TrialState.COMPLETE, _VALUE.c.objective == 0)
    )


def trial_result(session: Session, trial_id: int) -> tuple[int, float | None, float | None]:
    """A trial's number, its value if it is complete, and the best value of the study's other complete trials."""
    trial, value = _TRIAL.c, _VALUE.c
    row = session.execute(
        select(trial.number, trial.study_id, trial.state, value.value)
        .select_from(_TRIAL.outerjoin(_VALUE, (value.trial_id == trial.trial_id) & (value.objective == 0)))
        .where(trial.trial_id == trial_id)
    ).one()
    if row.state != TrialState.COMPLETE:
        return row.number, None, None
    others = session.execute(_best(row.study_id).where(trial.trial_id != trial_id)).scalar()
    return row.number, row.value, others
