"""The one read path of a study: every answer that shows one (POST /studies, GET /studies,
GET /studies/{name}, pause/resume/stop) is a StudySummary built here, in two queries and little
Python per study, whatever its number of trials.

At 200 studies the list cost the API 45 ms of Python and SQL per request on a 2-vCPU VM
(docs/benchmarks.md §7): the ORM building a record per study, the driver decoding every stored
spec from JSON (11 ms), the tallies, and a response model validated per study. Here the records
are plain rows, each spec is decoded once per process (a spec never changes after its study is
created: ``SpecCache``), and the progress comes from the tallies (service/studies/tallies.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.orm import Session

from service.db.models import IN_PROGRESS, StudyRecord
from service.errors import StudyNotFoundError
from service.optuna.tables import optuna_ids
from service.scheduling.budget import Progress, completes_now, mark_completed_if_spent
from service.studies.tallies import StudyTallies


@dataclass(frozen=True)
class StudySummary:
    """What the API shows of a study (service.api.schemas.StudyOut): its record's columns, its
    decoded spec, and its progress."""

    id: int  # its hpo_studies row's (with created_at, it names the study's artifact folder)
    name: str
    status: str
    status_reason: str | None
    spec: dict[str, Any]
    max_trials: int
    priority: int
    created_at: datetime
    updated_at: datetime
    progress: Progress
    optuna_id: int | None  # None while its Optuna study does not exist (being created or deleted)


def _summary(source: Any, spec: dict[str, Any], progress: Progress, optuna_id: int | None) -> StudySummary:
    """From a StudyRecord, or a row of the same columns."""
    return StudySummary(
        id=source.id,
        name=source.name,
        status=source.status,
        status_reason=source.status_reason,
        spec=spec,
        max_trials=source.max_trials,
        priority=source.priority,
        created_at=source.created_at,
        updated_at=source.updated_at,
        progress=progress,
        optuna_id=optuna_id,
    )


class SpecCache:
    """Decoded specs by study, one per API process; safe to use from several threads.

    A study is its record's id and ``created_at`` (to the microsecond): SQLite hands a deleted
    study's id to the next one created, whose spec may differ. A spec changes with its record's
    ``updated_at`` (PATCH /studies/{name}), when it is decoded again.
    """

    def __init__(self) -> None:
        self._specs: dict[tuple[int, datetime], tuple[datetime, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def decoded(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Each row's spec (its ``id``, ``created_at``, ``updated_at`` and ``spec_json``), decoding only
        those not seen before or changed since."""
        with self._lock:
            for row in rows:
                seen = self._specs.get((row.id, row.created_at))
                if seen is None or seen[0] != row.updated_at:
                    self._specs[row.id, row.created_at] = (row.updated_at, json.loads(row.spec_json))
            return [self._specs[row.id, row.created_at][1] for row in rows]

    def keep_only(self, rows: Sequence[Any]) -> None:
        """Forget the specs of the studies not among ``rows`` (deleted)."""
        with self._lock:
            kept = {(row.id, row.created_at) for row in rows}
            self._specs = {key: spec for key, spec in self._specs.items() if key in kept}


_STUDY_COLUMNS = (
    StudyRecord.id,
    StudyRecord.name,
    StudyRecord.status,
    StudyRecord.status_reason,
    StudyRecord.max_trials,
    StudyRecord.priority,
    StudyRecord.created_at,
    StudyRecord.updated_at,
)
_IDS = optuna_ids()
_LISTED = (  # built once; the spec as the stored text, so that the driver does not decode it
    select(*_STUDY_COLUMNS, cast(StudyRecord.spec, Text).label("spec_json"), _IDS.c.optuna_id)
    .outerjoin(_IDS, _IDS.c.name == StudyRecord.name)
    .where(StudyRecord.status.not_in(IN_PROGRESS))
    .order_by(StudyRecord.created_at.desc())
)
_NAMED = _LISTED.where(StudyRecord.name == bindparam("study_name"))


def list_studies(*, session: Session, tallies: StudyTallies, specs: SpecCache) -> list[StudySummary]:
    """Every study, newest first (those being created or deleted are not shown), in two queries
    whatever their number: the records, then the trials ``tallies`` has not counted yet. A study
    whose budget is spent is marked completed (the only case that reads its record again)."""
    rows = session.execute(_LISTED).all()
    specs.keep_only(rows)
    progress = tallies.progress(session, {row.optuna_id: row.created_at for row in rows if row.optuna_id is not None})
    return _summaries(session, rows, progress, specs)


def get_study(
    *, session: Session, name: str, tallies: StudyTallies | None = None, specs: SpecCache | None = None
) -> StudySummary:
    """The study called ``name`` as the list shows it; StudyNotFoundError if none. A study whose
    budget is spent is marked completed. ``tallies`` and ``specs``: the process's (the API keeps
    one of each); a one-off read leaves them out."""
    tallies = tallies if tallies is not None else StudyTallies()
    specs = specs if specs is not None else SpecCache()
    row = session.execute(_NAMED, {"study_name": name}).first()
    if row is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    if row.optuna_id is None:
        return _summaries(session, [row], {}, specs)[0]
    progress = {row.optuna_id: tallies.progress_of(session, row.optuna_id, row.created_at)}
    return _summaries(session, [row], progress, specs)[0]


def _summaries(
    session: Session, rows: Sequence[Any], progress: dict[int, Progress], specs: SpecCache
) -> list[StudySummary]:
    """The rows with their progress; those whose budget is spent are marked completed (and committed)."""
    summaries = []
    for row, spec in zip(rows, specs.decoded(rows), strict=True):
        study = progress.get(row.optuna_id) or Progress.of(None)
        source: Any = row
        if completes_now(row, study.budget):
            record = source = session.get_one(StudyRecord, row.id)
            mark_completed_if_spent(record, study.budget)
            session.flush()  # sets updated_at
        summaries.append(_summary(source, spec, study, row.optuna_id))
    session.commit()
    return summaries
