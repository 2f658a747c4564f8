"""What a report shows, read in a few statements whatever the study's size: every trial as a
summary row (service/optuna/summaries.py), and in full only the trials a plot draws one by one.

Plots that cannot show every point read a sample, and the page says so: importances and
parallel coordinates read at most ``SAMPLE`` complete trials drawn at random (seeded, so a report
is repeatable), learning curves the ``CURVES`` best complete and the latest pruned trials.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import FrozenTrial

from service.db.database import Database
from service.optuna.pages import trials_by_ids
from service.optuna.summaries import TrialSummary, trial_errors, trial_summaries
from service.studies.read import StudySummary, get_study
from service.studies.tallies import StudyTallies

SAMPLE = 1000  # complete trials read in full for importances and parallel coordinates
CURVES = 8  # learning curves drawn: this many best complete trials, and as many latest pruned ones
ERRORS = 20  # failed trials listed with their errors, the latest first


@dataclass(frozen=True)
class StudyReport:
    """One study's report, as read."""

    study: StudySummary
    trials: list[TrialSummary] = field(default_factory=list)  # every trial, by number
    sample: list[FrozenTrial] = field(default_factory=list)  # complete trials in full: all, or SAMPLE of them
    curves: list[FrozenTrial] = field(default_factory=list)  # trials whose learning curves are drawn
    best: FrozenTrial | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)  # (trial number, error) of failed trials

    @property
    def complete(self) -> list[TrialSummary]:
        """The complete trials, by number."""
        return [t for t in self.trials if t.state == "complete"]

    def counts(self) -> dict[str, int]:
        """Trials per state."""
        counts = dict.fromkeys(("complete", "pruned", "fail", "running", "waiting"), 0)
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        return counts

    def compute_seconds(self) -> dict[str, float]:
        """The sum of the finished trials' durations, per device kind."""
        seconds: dict[str, float] = {}
        for trial in self.trials:
            if trial.end is not None:
                seconds[trial.device] = seconds.get(trial.device, 0.0) + trial.seconds
        return seconds

    def wall_clock(self) -> tuple[datetime, datetime] | None:
        """From the first trial's start to the last finished trial's end (None before one has finished)."""
        starts = [t.start for t in self.trials if t.start is not None]
        ends = [t.end for t in self.trials if t.end is not None]
        return (min(starts), max(ends)) if starts and ends else None


def read_report(database: Database, name: str, tallies: StudyTallies | None = None) -> StudyReport:
    """The report of the study ``name``; StudyNotFoundError if there is none. ``tallies``: the
    process's (service.studies.tallies), for the study's counts."""
    with database.sessions() as session:  # get_study commits (it may mark the study completed)
        study = get_study(session=session, name=name, tallies=tallies)
        if study.optuna_id is None:
            return StudyReport(study)
        connection = session.connection()
        trials = trial_summaries(connection, study.optuna_id)
        complete = [t for t in trials if t.state == "complete"]
        ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
        sampled = complete if len(complete) <= SAMPLE else random.Random(0).sample(complete, SAMPLE)
        drawn = [*ranked[:CURVES], *[t for t in trials if t.state == "pruned"][-CURVES:]]
        sample = trials_by_ids(connection, [t.trial_id for t in sampled], params_only=True)
        full = {t.number: t for t in trials_by_ids(connection, sorted({t.trial_id for t in drawn}))}
        errors = trial_errors(connection, study.optuna_id, ERRORS)
        session.commit()
    return StudyReport(
        study=study,
        trials=trials,
        sample=sample,
        curves=[full[t.number] for t in drawn if t.number in full],
        best=full.get(ranked[0].number) if ranked else None,
        errors=errors,
    )
