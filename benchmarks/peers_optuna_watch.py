"""Events of a study in an Optuna storage, seen by polling it (the service's and plain Optuna's).

Both systems keep their trials in PostgreSQL, so the same watcher times both: an epoch's event
is the first poll that sees its intermediate value (polls every ``POLL_S``: up to that much late),
a trial's end the first poll that sees it COMPLETE or PRUNED.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from benchmarks.peers_race import Events

POLL_S = 0.25
ENDS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}


class StudyWatch:
    """Turns what a study's trials show at each poll into events."""

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str, events: Events) -> None:
        self.storage, self.study_name, self.events = storage, study_name, events
        self.seen: set[tuple[int, int]] = set()
        self.ended: set[int] = set()
        self.study_id: int | None = None

    def poll(self, test_of: Callable[[optuna.trial.FrozenTrial], float | None]) -> None:
        """Record the epochs and trial ends that appeared since the last poll."""
        if self.study_id is None:
            try:
                self.study_id = self.storage.get_study_id_from_name(self.study_name)
            except KeyError:
                return  # not created yet
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=False):
            for step, value in trial.intermediate_values.items():
                if (trial.number, step) not in self.seen:
                    self.seen.add((trial.number, step))
                    self.events.add(trial=trial.number, epoch=step, val=value)
            if trial.state in ENDS and trial.number not in self.ended:
                self.ended.add(trial.number)
                final = trial.value if trial.value is not None else _last(trial)
                self.events.add(
                    trial=trial.number, state=ENDS[trial.state], val=final, test=test_of(trial), params=trial.params
                )

    def watch_until(
        self, deadline: float, test_of: Callable[[optuna.trial.FrozenTrial], float | None], trials: int
    ) -> None:
        """Poll until the wall-clock ``deadline`` (time.time()), or until ``trials`` trials have ended."""
        while time.time() < deadline and len(self.ended) < trials:
            tick = time.time()
            self.poll(test_of)
            time.sleep(max(0.0, POLL_S - (time.time() - tick)))


def _last(trial: optuna.trial.FrozenTrial) -> Any:
    steps = sorted(trial.intermediate_values)
    return trial.intermediate_values[steps[-1]] if steps else None
