"""Running one claimed trial: heartbeats, the objective, and telling Optuna how it ended.

This is what ``study.optimize(n_trials=1)`` does for a trial, minus the part we cannot use:
optimize creates (or pops) its own trial, and the worker has already claimed one under the
study lock (worker.picking.claim_trial). Sampling happens here, outside the lock, lazily at
the objective's first ``suggest`` as always in Optuna.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
from optuna.study._tell import _tell_with_warning
from optuna.trial import TrialState

from service.resilient import ResilientRDBStorage

log = logging.getLogger("hpo.worker")


def run_claimed(
    study: optuna.Study,
    trial_id: int,
    objective: Callable[[optuna.Trial], float],
    storage: ResilientRDBStorage,
    beat_first: bool = True,
) -> TrialState:
    """Run ``objective`` on the claimed trial while its heartbeat beats; returns the state told.

    ``beat_first`` False: the claim already committed the first heartbeat. An exception from
    the objective ends the trial as FAIL (logged), TrialPruned as PRUNED.
    """
    trial = optuna.Trial(study, trial_id)
    value: float | None = None
    state: TrialState | None = None  # None: COMPLETE if the value is a finite number, else FAIL
    with heartbeats(storage, trial_id, beat_first):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as exc:
            state = TrialState.FAIL
            log.warning("trial %s failed: %r", trial.number, exc, exc_info=True)
        except BaseException:
            _tell_with_warning(study, trial, None, TrialState.FAIL, skip_if_finished=True)
            raise
    # What Study.optimize does to finish a trial. The public Study.tell would also read the
    # trial back to return it: a round trip per trial that nothing here needs.
    told, _, failure = _tell_with_warning(study, trial, value, state, skip_if_finished=True, suppress_warning=True)
    if failure is not None:
        log.warning("trial %s failed: %s", trial.number, failure)
    return told


@contextmanager
def heartbeats(storage: ResilientRDBStorage, trial_id: int, beat_first: bool = True) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs (Optuna's stale-trial signal)."""
    interval = storage.get_heartbeat_interval()
    if interval is None:  # heartbeats are off for this storage
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        if beat_first:
            storage.record_heartbeat(trial_id)
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
