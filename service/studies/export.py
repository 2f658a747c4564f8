"""A study's trials as rows of a file, read a page at a time: ``GET /studies/{name}/trials.csv``
and ``.jsonl``, and `hpo study export`.

One row per trial, in trial-number order, with stable columns (``columns``):

- ``number``, ``state`` (complete, pruned, fail, running, waiting), ``value`` (the validation
  accuracy a complete trial reached; a pruned trial's last reported epoch's, as Optuna keeps it);
- ``param.<name>`` for every parameter the study searches, in name order (fixed parameters
  are in its spec: the same for every trial);
- ``metric.<name>`` for each of ``METRICS``, what a finished trial measured (empty until it
  has; the k-fold ones only for a k-fold trial);
- ``epochs_reported`` (epochs whose validation accuracy reached Optuna), ``last_val_accuracy``,
  ``datetime_start``, ``datetime_complete``, ``duration_s``, ``retry_of`` (the trial this one
  resumes), ``error`` (why a failed trial failed).

In CSV an absent value is an empty field and a list is JSON; JSON lines keep the types.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from objectives.config import HOLDOUT_RESULT, KFOLD_RESULT
from service.db.database import Database
from service.errors import StudyNotFoundError
from service.spec.schema import StudySpec
from service.studies.trials import list_trials, study_spec

PAGE = 500  # trials read per query while a file streams
METRICS = (*HOLDOUT_RESULT, *KFOLD_RESULT)  # what a finished trial measured (objectives.train.TrainResult)
TIMING = ("epochs_reported", "last_val_accuracy", "datetime_start", "datetime_complete", "duration_s")


def columns(spec: StudySpec) -> list[str]:
    """The file's columns for a study of ``spec``."""
    searched = [f"param.{name}" for name in sorted(spec.searched())]
    return ["number", "state", "value", *searched, *(f"metric.{m}" for m in METRICS), *TIMING, "retry_of", "error"]


def study_columns(database: Database, name: str) -> list[str]:
    """``columns`` of the study ``name``; StudyNotFoundError if there is none (asked before a file starts)."""
    with database.session() as session:
        return columns(study_spec(session=session, name=name))


def trial_rows(database: Database, name: str, names: list[str]) -> Iterator[dict[str, Any]]:
    """Each trial of the study as a row of ``names``, a page per short transaction (a study
    deleted meanwhile ends the rows)."""
    offset = 0
    while True:
        try:
            with database.session() as session:
                _total, page = list_trials(session=session, name=name, offset=offset, limit=PAGE)
        except StudyNotFoundError:
            return
        if not page:
            return
        for trial in page:
            yield trial_row(trial, names)
        offset = page[-1].number + 1


def trial_row(trial: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    """One trial's values for the columns ``names``."""
    metrics = trial.user_attrs.get("metrics") or {}
    curve = [value for _, value in sorted(trial.intermediate_values.items())]
    start, end = trial.datetime_start, trial.datetime_complete
    known: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "epochs_reported": len(curve),
        "last_val_accuracy": curve[-1] if curve else None,
        "datetime_start": start.isoformat() if start else None,
        "datetime_complete": end.isoformat() if end else None,
        "duration_s": (end - start).total_seconds() if start and end else None,
        "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(trial),
        "error": trial.user_attrs.get("error"),
    }
    known |= {f"param.{name}": value for name, value in trial.params.items()}
    known |= {f"metric.{name}": metrics.get(name) for name in METRICS}
    return {name: known.get(name) for name in names}


def csv_lines(names: list[str], rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The header, then one CSV line per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")

    def written() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    yield written()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})
        yield written()


def jsonl_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON object per row and line."""
    for row in rows:
        yield json.dumps(row, default=str) + "\n"
