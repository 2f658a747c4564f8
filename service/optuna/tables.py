"""Reads of Optuna's tables in SQL: study counts for budgets and lists, the waiting queue.

A companion of service/optuna/storage.py (same Optuna 5.0 assumptions, pinned by
tests/service/test_optuna_internals.py). Optuna reads a study by loading every trial of it; these
queries read what a decision or a page needs, so their cost does not grow with the study where
it matters: the budget check under the study lock (``budget_stats``, on the indexes that the
migration 0003_claim_indexes adds). A page of trials is read in service/optuna/pages.py.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Float,
    Integer,
    Select,
    Subquery,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import BindParameter, ColumnElement

WORKER_ATTR = "worker"  # user attribute of a trial: the process that claimed it, HOST:PID (worker/slot_loop.py)
RETRY_OF = "failed_trial"  # RetryHeartbeatStaleTrialCallback's mark on a retry: the lineage's first trial number
LARGEST_ID = 2**31 - 1  # Optuna's ids are 32-bit integers
COUNTED_STATES = ("complete", "pruned", "fail", "running", "waiting")  # Optuna's TrialState names, lower-case


def trial_seconds(dialect: str) -> ColumnElement[float]:
    """A trial's duration in seconds (``datetime_complete - datetime_start``; NULL while it runs
    or waits), as the dialect computes it: what a study's compute seconds sum."""
    columns = models.TrialModel.__table__.c  # the columns: the model maps them behind properties
    start, end = columns.datetime_start, columns.datetime_complete
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86_400.0
    return cast(func.extract("epoch", end - start), Float)


def trial_ms(dialect: str) -> ColumnElement[int]:
    """``trial_seconds`` in whole milliseconds: integers, so that a sum is the same whichever
    order adds them (a tally adds trial by trial what a from-scratch count sums in SQL)."""
    return cast(func.round(trial_seconds(dialect) * 1000.0), BigInteger)


def study_stats(dialect: str, study_name: str | None = None, *, with_best_value: bool = True) -> Subquery:
    """Per Optuna study (or just ``study_name``): ``name``, ``optuna_id``, a count per state of
    COUNTED_STATES, ``retries`` (trials marked RETRY_OF), ``ms`` (the finished trials' durations
    summed, ``trial_ms``) and, if asked, ``best_value`` (the highest
    COMPLETE value; it costs a join with every trial's value). It reads every trial: for lists
    and views, not for decisions under a lock (``budget_stats``).
    """
    study, trial, retry = models.StudyModel, models.TrialModel, models.TrialSystemAttributeModel
    per_state = [func.sum(case((trial.state == TrialState[s.upper()], 1), else_=0)).label(s) for s in COUNTED_STATES]
    query = (
        select(study.study_name.label("name"), study.study_id.label("optuna_id"), *per_state)
        .add_columns(func.count(retry.trial_id).label("retries"), func.sum(trial_ms(dialect)).label("ms"))
        .outerjoin(trial, trial.study_id == study.study_id)
        .outerjoin(retry, (retry.trial_id == trial.trial_id) & (retry.key == RETRY_OF))
        .group_by(study.study_id, study.study_name)
    )
    if with_best_value:
        value = models.TrialValueModel
        best = func.max(case((trial.state == TrialState.COMPLETE, value.value))).label("best_value")
        query = query.add_columns(best).outerjoin(value, (value.trial_id == trial.trial_id) & (value.objective == 0))
    if study_name is not None:
        query = query.where(study.study_name == study_name)
    return query.subquery("optuna_stats")


def budget_stats(study_name: str | BindParameter[str] | None = None) -> Subquery:
    """Per Optuna study (or just ``study_name``, a name or a bound parameter): ``name``,
    ``optuna_id``, ``trials`` (all of them), ``running``, ``waiting`` and ``retries``: what a
    budget decision needs, read from indexes.

    Each figure costs the same whatever the study's size: Optuna numbers a study's trials 0, 1,
    2, ... in creation order under a lock on the study's row, so the count is the highest number
    plus one; the running and waiting trials are few, and so are retries.
    """
    study = models.StudyModel
    trial, retried = aliased(models.TrialModel), aliased(models.TrialModel)
    mark = models.TrialSystemAttributeModel
    of_study = trial.study_id == study.study_id
    count_in = {
        state: select(func.count()).where(of_study, trial.state == state).scalar_subquery()
        for state in (TrialState.RUNNING, TrialState.WAITING)
    }
    query = select(
        study.study_name.label("name"),
        study.study_id.label("optuna_id"),
        select(func.coalesce(func.max(trial.number) + 1, 0)).where(of_study).scalar_subquery().label("trials"),
        count_in[TrialState.RUNNING].label("running"),
        count_in[TrialState.WAITING].label("waiting"),
        select(func.count())
        .select_from(mark)
        .join(retried, retried.trial_id == mark.trial_id)
        .where(mark.key == RETRY_OF, retried.study_id == study.study_id)
        .scalar_subquery()
        .label("retries"),
    )
    if study_name is not None:
        query = query.where(study.study_name == study_name)
    return query.subquery("budget_stats")


def trials_to_tally(
    above: Mapping[int, int], pending: Collection[int], dialect: str
) -> tuple[CompoundSelect[Any], dict[str, Any]]:
    """A statement and its parameters: per trial ``study_id``, ``trial_id``, ``state``, ``value``
    (objective 0), ``is_retry`` and ``ms`` (its duration, once finished: ``trial_ms``), for the
    trials of each study in ``above`` whose id is above the given one, and the trials ``pending``
    (service/studies/tallies.py).

    For several studies on PostgreSQL, the studies, their ids and the pending trials travel as
    arrays, so one statement, built once, serves any number of studies (building one condition
    per study cost 18 ms per request at 200 studies). One study (GET /best), or SQLite, the
    single-machine default, gets a condition per study: its values in the statement let
    PostgreSQL's planner choose the index range (it cannot look into the arrays).
    """
    if dialect == "postgresql" and len(above) > 1:
        arrays = {"study_ids": list(above), "above_ids": list(above.values()), "pending_ids": list(pending)}
        return _TALLY_ON_POSTGRESQL, arrays
    trial = models.TrialModel
    conditions = [and_(trial.study_id == sid, trial.trial_id > last) for sid, last in above.items()]
    rows = _rows_to_tally(dialect)
    return rows.where(or_(false(), *conditions)).union(rows.where(trial.trial_id.in_(list(pending)))), {}


def tally_from_scratch(study_ids: Collection[int], dialect: str) -> CompoundSelect[Any]:
    """One statement (so one snapshot) counting the studies ``study_ids`` from nothing: per study
    and finished state a row with ``trials`` (how many), ``retries`` (of them, marked RETRY_OF),
    ``trial_id`` (the highest id), ``value`` (the best COMPLETE value) and ``ms`` (their
    durations summed), ``grouped`` true; and
    each RUNNING or WAITING trial as a row of its own (``grouped`` false). Aggregated in SQL: a
    study of 20,000 trials costs the server a few milliseconds, not 20,000 rows to the client."""
    trial, value, mark = models.TrialModel, models.TrialValueModel, models.TrialSystemAttributeModel
    of_studies = trial.study_id.in_(list(study_ids))
    unfinished = trial.state.in_([TrialState.RUNNING, TrialState.WAITING])
    is_retry = select(mark.trial_id).where(mark.trial_id == trial.trial_id, mark.key == RETRY_OF).exists()
    finished = (
        select(
            trial.study_id,
            trial.state,
            func.count().label("trials"),
            func.count(mark.trial_id).label("retries"),
            func.max(trial.trial_id).label("trial_id"),
            func.max(case((trial.state == TrialState.COMPLETE, value.value))).label("value"),
            func.sum(trial_ms(dialect)).label("ms"),
            true().label("grouped"),
        )
        .outerjoin(value, (value.trial_id == trial.trial_id) & (value.objective == 0))
        .outerjoin(mark, (mark.trial_id == trial.trial_id) & (mark.key == RETRY_OF))
        .where(of_studies, ~unfinished)
        .group_by(trial.study_id, trial.state)
    )
    one_each = select(
        trial.study_id,
        trial.state,
        literal(1).label("trials"),
        cast(is_retry, Integer).label("retries"),
        trial.trial_id,
        literal(None).label("value"),
        literal(None).label("ms"),
        false().label("grouped"),
    ).where(of_studies, unfinished)
    return finished.union_all(one_each)


def earliest_with_value(study_id: int, best: float) -> Select[Any]:
    """The lowest id of the study's COMPLETE trials whose value is ``best``."""
    trial, value = models.TrialModel, models.TrialValueModel
    return (
        select(func.min(trial.trial_id))
        .join(value, (value.trial_id == trial.trial_id) & (value.objective == 0))
        .where(trial.study_id == study_id, trial.state == TrialState.COMPLETE, value.value == best)
    )


def _rows_to_tally(dialect: str) -> Select[Any]:
    trial, value, mark = models.TrialModel, models.TrialValueModel, models.TrialSystemAttributeModel
    is_retry = select(mark.trial_id).where(mark.trial_id == trial.trial_id, mark.key == RETRY_OF).exists()
    ms = trial_ms(dialect).label("ms")
    return select(trial.study_id, trial.trial_id, trial.state, value.value, is_retry.label("is_retry"), ms).outerjoin(
        value, (value.trial_id == trial.trial_id) & (value.objective == 0)
    )


def _tally_on_postgresql() -> CompoundSelect[Any]:
    trial, ids = models.TrialModel, ARRAY(Integer)  # the type of Optuna's id columns
    marks = (
        func.unnest(cast(bindparam("study_ids"), ids), cast(bindparam("above_ids"), ids))
        .table_valued("study_id", "above_id")
        .render_derived()
    )
    # Each study's condition as one range of the (study_id, trial_id) index (hpo_ix_trials_study_trial):
    # (study, above) < (study_id, trial_id) <= (study, LARGEST_ID). Written as study_id = s AND
    # trial_id > a, the planner scanned every trial of the study at every request (7 ms at 20,000).
    key = tuple_(trial.study_id, trial.trial_id)
    in_range = (key > tuple_(marks.c.study_id, marks.c.above_id)) & (key <= tuple_(marks.c.study_id, LARGEST_ID))
    rows = _rows_to_tally("postgresql")
    pending = trial.trial_id == func.any(cast(bindparam("pending_ids"), ids))
    return rows.join(marks, in_range).union(rows.where(pending))


_TALLY_ON_POSTGRESQL = _tally_on_postgresql()


def optuna_ids() -> Subquery:
    """``name`` and ``optuna_id`` of every Optuna study."""
    study = models.StudyModel
    return select(study.study_name.label("name"), study.study_id.label("optuna_id")).subquery("optuna_ids")


def names_with_running_trials() -> Select[tuple[str]]:
    """The names of the Optuna studies that have a RUNNING trial (only those can hold a stale one)."""
    study, trial = models.StudyModel, models.TrialModel
    running = select(trial.study_id).where(trial.state == TrialState.RUNNING)
    return select(study.study_name).where(study.study_id.in_(running))


def waiting_trial_ids(session: Session, study_id: int) -> list[int]:
    """The study's WAITING trials, oldest (lowest number) first: Optuna's queue order."""
    trial = models.TrialModel
    query = select(trial.trial_id).where(trial.study_id == study_id, trial.state == TrialState.WAITING)
    return list(session.execute(query.order_by(trial.number)).scalars())


def running_trials_of_worker(identity: str) -> Select[str, int]:
    """(study name, trial id) of the RUNNING trials whose ``worker`` user attribute is ``identity``."""
    study, trial, attr = models.StudyModel, models.TrialModel, models.TrialUserAttributeModel
    return (
        select(study.study_name, trial.trial_id)
        .join(trial, trial.study_id == study.study_id)
        .join(attr, (attr.trial_id == trial.trial_id) & (attr.key == WORKER_ATTR))
        .where(trial.state == TrialState.RUNNING, attr.value_json == json.dumps(identity))
        .order_by(trial.trial_id)
    )
