"""The chaos benchmark's judgement of a finished run, read from Optuna's tables.

A lineage is a trial and its retries (Optuna's ``failed_trial`` system attribute names the
first). It is finished when its last trial is COMPLETE or PRUNED, lost when that one is FAIL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class Verdict:
    """What the run left behind."""

    lineages: dict[str, int] = field(default_factory=dict)  # finished lineages per study
    lost: int = 0  # lineages whose last trial FAILed
    retries: int = 0
    resumes_checked: int = 0  # retries whose start was recorded (a retry killed itself records none)
    max_epochs_lost: int = 0  # the most epochs one fault cost a lineage
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The verdict for people."""
        return [
            f"lineages finished per study: {self.lineages}; lost: {self.lost}",
            f"retries: {self.retries}; resumes checked: {self.resumes_checked}; most epochs lost to one fault: "
            f"{self.max_epochs_lost}",
            f"problems: {self.problems or 'none'}",
        ]

    def as_dict(self) -> dict[str, Any]:
        """For the results file."""
        return asdict(self)


def verify(url: str, names: list[str], max_trials: int) -> Verdict:
    """Judge the studies ``names`` in the database at ``url``."""
    verdict = Verdict()
    storage = optuna.storages.RDBStorage(url)
    for name in names:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        _check_study(name, trials, max_trials, verdict)
    storage.remove_session()
    storage.engine.dispose()
    return verdict


def _check_study(name: str, trials: list[FrozenTrial], max_trials: int, verdict: Verdict) -> None:
    numbers = [t.number for t in trials]
    if len(set(numbers)) != len(numbers):
        verdict.problems.append(f"{name}: a trial number appears twice")
    by_number = {t.number: t for t in trials}
    lineages: dict[int, list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        lineages[trial.system_attrs.get("failed_trial", trial.number)].append(trial)
    finished = 0
    for root, members in lineages.items():
        last = max(members, key=lambda t: t.number)
        if last.state in DONE:
            finished += 1
        elif last.state == TrialState.FAIL:
            verdict.lost += 1
            verdict.problems.append(f"{name}: lineage {root} lost: {last.user_attrs.get('error', 'retries used up')}")
        else:
            verdict.problems.append(f"{name}: lineage {root} left {last.state.name}")
        for retry in (t for t in members if t.system_attrs.get("retry_history")):
            verdict.retries += 1
            _check_resume(retry, by_number[retry.system_attrs["retry_history"][-1]], verdict)
    verdict.lineages[name] = finished
    if finished != max_trials:
        verdict.problems.append(f"{name}: {finished} lineages finished, not {max_trials}")


def _check_resume(retry: FrozenTrial, before: FrozenTrial, verdict: Verdict) -> None:
    """A retry resumes after the epochs its predecessor reached, or at most one before."""
    if "config" not in retry.user_attrs:  # the retry was killed too: its start was never recorded
        return
    verdict.resumes_checked += 1
    reached = len(before.intermediate_values)  # inherited epochs included
    lost = max(0, reached - int(retry.user_attrs.get("resumed_from_epoch", 0)))
    verdict.max_epochs_lost = max(verdict.max_epochs_lost, lost)
    if lost > 1:
        attrs = {k: retry.user_attrs.get(k) for k in ("resumed_from_epoch", "checkpoint", "checkpoint_note", "worker")}
        verdict.problems.append(
            f"trial {retry.number} resumed {lost} epochs behind trial {before.number} "
            f"({before.state.name}, worker {before.user_attrs.get('worker')}): {attrs}"
        )
