"""Running one claimed trial: heartbeats, the objective, and telling Optuna how it ended.

This is what ``study.optimize(n_trials=1)`` does for a trial, minus the part we cannot use:
optimize creates (or pops) its own trial, and the worker has already claimed one under the
study lock (worker.claims). Sampling happens here, outside the lock, lazily at the
objective's first ``suggest`` as always in Optuna.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from service.optuna_internals import heartbeat_thread, tell, trial_handle

log = logging.getLogger("hpo.worker")


def run_claimed(
    study: optuna.Study,
    trial_id: int,
    objective: Callable[[optuna.Trial], float],
    storage: BaseStorage,
    first_beat_done: bool = False,
) -> TrialState:
    """Run ``objective`` on the claimed trial while its heartbeat beats; returns the state told.

    ``storage`` records the heartbeats (``first_beat_done``: the claim recorded the first). An
    exception from the objective ends the trial as FAIL (logged), TrialPruned as PRUNED.
    """
    trial = trial_handle(study, trial_id)
    value: float | None = None
    state: TrialState | None = None  # None: COMPLETE if the value is a finite number, else FAIL
    with heartbeat_thread(storage, trial_id, first_beat_done=first_beat_done):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as exc:
            state = TrialState.FAIL
            log.warning("trial %s failed: %r", trial.number, exc, exc_info=True)
        except BaseException:
            tell(study, trial, None, TrialState.FAIL)
            raise
    told, failure = tell(study, trial, value, state)
    if failure is not None:
        log.warning("trial %s failed: %s", trial.number, failure)
    return told
