"""Every study's trial counts and best trial for GET /studies and GET /best, kept up to date incrementally.

Aggregating them per request reads every trial of every study (``service.optuna.tables.study_stats``):
35 ms at 50,000 trials on an idle server, more under load. The API process keeps a tally per
study instead and, per request, reads only the trials it has not counted yet: those created
since (above the highest id it has read) and those it saw unfinished. One query, whatever
the number of studies.

Exact because finished trials never change and Optuna creates a study's trials one at a time
under a lock on the study's row, so they commit in id order: after a read, every trial up to
the highest id read is counted or pending.

A tally belongs to one study, not to an Optuna id: SQLite hands a deleted study's id, and its
trials' ids, to the next ones created. Callers name a study by its Optuna id and its record's
``created_at`` (to the microsecond), and a tally made for another ``created_at`` starts afresh.

A process that starts would read every trial of every study once (0.1 s for a study of 20,000
trials, a row each). So the API saves its tallies (``StudyTallies.save``, from its sweep, every
15 s, and at shutdown) in ``hpo_tally_snapshots``, and a tally it does not hold yet starts from
its snapshot, reading only the trials since: a restart costs what a warm read costs. A snapshot
is exact for the same reason a tally is. A study with no snapshot is counted in aggregate, in SQL
(``tally_from_scratch``: one row per finished state, one per unfinished trial), and goes on
trial by trial from there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.trial import TrialState
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import TallySnapshot, in_utc
from service.optuna.tables import COUNTED_STATES, earliest_with_value, optuna_ids, tally_from_scratch, trials_to_tally
from service.scheduling.budget import Progress

UNFINISHED = {TrialState.RUNNING, TrialState.WAITING}


@dataclass
class _Tally:
    """One study's counts: finished trials summed, unfinished ones kept to look at again."""

    created_at: datetime  # the study's (its record's): which study the tally's Optuna id meant
    through_id: int = -1  # every trial with an id up to this one is counted or pending
    finished: Counter[str] = field(default_factory=Counter)  # complete, pruned, fail
    finished_retries: int = 0
    best_value: float | None = None
    best_trial_id: int | None = None  # the COMPLETE trial with best_value (the earliest of equals)
    compute_ms: int = 0  # the finished trials' durations summed
    pending: dict[int, tuple[str, bool]] = field(default_factory=dict)  # trial id -> (state, is a retry)
    saved: bool = False  # as in its snapshot
    restored: bool = False  # its snapshot was looked for (once per tally)
    counted: bool = False  # it has read its study once (in aggregate); from then on, trial by trial
    _progress: Progress | None = None  # progress() as of the last add

    def add(self, trial_id: int, state: TrialState, value: float | None, is_retry: bool, ms: int | None) -> None:
        """Count a trial read from the database (again, if it was pending); ``ms``: its duration."""
        self.through_id = max(self.through_id, trial_id)
        self._progress, self.saved = None, False
        if state in UNFINISHED:
            self.pending[trial_id] = (state.name.lower(), is_retry)
            return
        self.pending.pop(trial_id, None)
        self.finished[state.name.lower()] += 1
        self.finished_retries += int(is_retry)
        self.compute_ms += ms or 0
        if state == TrialState.COMPLETE and value is not None and (self.best_value is None or value > self.best_value):
            self.best_value, self.best_trial_id = value, trial_id

    def add_counted(self, row: Any) -> None:
        """Count a row of service.optuna.tables.tally_from_scratch: ``trials`` finished trials in
        ``state`` (``grouped``), up to id ``trial_id``, or one unfinished trial (not grouped)."""
        state, last_id, best = row.state, row.trial_id, row.value
        if not row.grouped:
            self.add(last_id, state, None, bool(row.retries), None)
            return
        self.through_id = max(self.through_id, last_id)
        self._progress, self.saved = None, False
        self.finished[state.name.lower()] += row.trials
        self.finished_retries += row.retries
        self.compute_ms += int(row.ms or 0)
        if best is not None and (self.best_value is None or best > self.best_value):
            self.best_value, self.best_trial_id = best, None  # which trial: looked up when asked for

    def progress(self) -> Progress:
        """The counts as Progress (what study_stats would say); kept until a trial is added."""
        if self._progress is None:
            counts = {state: self.finished[state] for state in COUNTED_STATES}
            for state, _ in self.pending.values():
                counts[state] += 1
            retries = self.finished_retries + sum(is_retry for _, is_retry in self.pending.values())
            self._progress = Progress(counts, retries, self.best_value, self.compute_ms)
        return self._progress

    def snapshot(self) -> dict[str, Any]:
        """The tally as JSON (hpo_tally_snapshots.tally)."""
        return {
            "through_id": self.through_id,
            "finished": dict(self.finished),
            "finished_retries": self.finished_retries,
            "best_value": self.best_value,
            "best_trial_id": self.best_trial_id,
            "compute_ms": self.compute_ms,
            "pending": [[trial_id, state, is_retry] for trial_id, (state, is_retry) in self.pending.items()],
        }

    @classmethod
    def from_snapshot(cls, created_at: datetime, saved: Mapping[str, Any]) -> _Tally:
        """A tally as ``snapshot`` saved it."""
        return cls(
            created_at,
            through_id=int(saved["through_id"]),
            finished=Counter({state: int(n) for state, n in saved["finished"].items()}),
            finished_retries=int(saved["finished_retries"]),
            best_value=saved["best_value"],
            best_trial_id=saved["best_trial_id"],
            compute_ms=int(saved["compute_ms"]),
            pending={int(trial_id): (str(state), bool(is_retry)) for trial_id, state, is_retry in saved["pending"]},
            saved=True,
            restored=True,
            counted=True,
        )


class StudyTallies:
    """The tallies of one process (the API keeps one); safe to use from several threads."""

    def __init__(self) -> None:
        self._tallies: dict[int, _Tally] = {}
        self._lock = threading.Lock()

    def progress(self, session: Session, studies: Mapping[int, datetime]) -> dict[int, Progress]:
        """The Progress of each study (Optuna id -> its record's ``created_at``), by Optuna id,
        after reading what changed since last time. Tallies of studies not named are forgotten."""
        with self._lock:
            self._tallies = {sid: self._tally(sid, created) for sid, created in studies.items()}
            _restore(session, self._tallies)
            _read(session, self._tallies)
            return {sid: tally.progress() for sid, tally in self._tallies.items()}

    def progress_of(self, session: Session, optuna_id: int, created_at: datetime) -> Progress:
        """The Progress of one study (GET /studies/{name}), the others' tallies kept."""
        return self._one(session, optuna_id, created_at).progress()

    def best_trial_id(self, session: Session, optuna_id: int, created_at: datetime) -> int | None:
        """The id of this study's best COMPLETE trial (the earliest of equals; None if it has none
        yet), after reading what changed in it since last time: GET /best without reading every
        trial's value, as Optuna's ``get_best_trial`` does. A tally counted in aggregate knows the
        best value, not its trial: one indexed query finds that, once."""
        tally = self._one(session, optuna_id, created_at)
        with self._lock:
            if tally.best_value is not None and tally.best_trial_id is None:
                earliest = earliest_with_value(optuna_id, tally.best_value)
                tally.best_trial_id = session.execute(earliest).scalar_one_or_none()
            return tally.best_trial_id

    def _one(self, session: Session, optuna_id: int, created_at: datetime) -> _Tally:
        with self._lock:
            one = {optuna_id: self._tally(optuna_id, created_at)}
            _restore(session, one)
            _read(session, one)
            self._tallies[optuna_id] = one[optuna_id]
            return one[optuna_id]

    def _tally(self, optuna_id: int, created_at: datetime) -> _Tally:
        """The study's tally: the one kept for its Optuna id if it was made for this study, else a new one."""
        tally = self._tallies.get(optuna_id)
        return tally if tally is not None and tally.created_at == created_at else _Tally(created_at)

    def save(self, session: Session) -> int:
        """Save the tallies changed since they were last saved or restored, and forget the snapshots
        of studies that are gone; returns how many were saved. Commits. A cache: a conflict with
        another API process saving the same study rolls back, and the next save tries again."""
        with self._lock:  # held throughout, so that no tally changes between its snapshot and its mark
            changed = {sid: tally for sid, tally in self._tallies.items() if not tally.saved}
            if not changed:
                return 0  # no write at all: an idle API does not take SQLite's write lock every sweep
            rows = [{"optuna_id": sid, "created_at": t.created_at, "tally": t.snapshot()} for sid, t in changed.items()]
            session.execute(delete(TallySnapshot).where(TallySnapshot.optuna_id.in_(list(changed))))
            session.execute(insert(TallySnapshot), rows)
            session.execute(
                delete(TallySnapshot).where(TallySnapshot.optuna_id.not_in(select(_OPTUNA_IDS.c.optuna_id)))
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return 0
            for tally in changed.values():
                tally.saved = True
            return len(changed)


_OPTUNA_IDS = optuna_ids()


def _restore(session: Session, tallies: dict[int, _Tally]) -> None:
    """Start the tallies that have read nothing yet from their studies' snapshots (one query)."""
    fresh = [sid for sid, tally in tallies.items() if not tally.restored]
    if not fresh:
        return
    for sid in fresh:
        tallies[sid].restored = True
    for row in session.execute(select(TallySnapshot).where(TallySnapshot.optuna_id.in_(fresh))).scalars():
        tally = tallies[row.optuna_id]
        # the same study, not one under a reused id, saved by a version that summed compute time
        if in_utc(row.created_at) == in_utc(tally.created_at) and "compute_ms" in row.tally:
            tallies[row.optuna_id] = _Tally.from_snapshot(tally.created_at, row.tally)


def _read(session: Session, tallies: dict[int, _Tally]) -> None:
    """Count into ``tallies`` the trials of their studies created or finished since their last
    read: a tally that has read nothing yet, in aggregate (one query for all of them); the others,
    trial by trial (one query)."""
    dialect = session.get_bind().dialect.name
    fresh = {sid: tally for sid, tally in tallies.items() if not tally.counted}
    if fresh:
        for row in session.execute(tally_from_scratch(list(fresh), dialect)):
            fresh[row.study_id].add_counted(row)
        for tally in fresh.values():
            tally.counted = True
    above = {sid: tally.through_id for sid, tally in tallies.items() if sid not in fresh}
    pending = [trial_id for sid in above for trial_id in tallies[sid].pending]
    if not above:
        return
    statement, parameters = trials_to_tally(above, pending, dialect)
    for row in session.execute(statement, parameters):
        tallies[row.study_id].add(row.trial_id, row.state, row.value, row.is_retry, row.ms)
