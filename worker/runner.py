"""Running one claimed trial: heartbeats, the objective, and telling Optuna how it ended.

This is what ``study.optimize(n_trials=1)`` does for a trial, minus the part we cannot use:
optimize creates (or pops) its own trial, and the worker has already claimed one under the
study lock (worker.claims). Sampling happens here, outside the lock, lazily at the
objective's first ``suggest`` as always in Optuna.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.gpu_failures import GpuFailure, classify, release_cached_memory
from service.optuna.storage import TunedRDBStorage
from service.optuna.trials import heartbeat_thread, tell, trial_handle

log = logging.getLogger("hpo.worker")
ERROR_CHARS = 500  # of a failed trial's "error" attribute


class HandBack(Exception):
    """Raised by an objective at an epoch boundary when the worker is shutting down: the trial
    ends FAIL and is re-queued (worker.objective.hand_back), to resume from its checkpoint."""


class ProcessPoisoned(RuntimeError):
    """A trial failed with a CUDA error that breaks the process's CUDA context: the slot's
    process must end (its supervisor starts a fresh one) rather than claim another trial."""


class Outcome(NamedTuple):
    """How a trial ended: the state told, why it failed (None unless the objective failed), and
    what a GPU failure means for this process (objectives.gpu_failures; None for any other)."""

    state: TrialState
    error: str | None
    gpu_failure: GpuFailure | None = None


def run_claimed(
    study: optuna.Study,
    trial_id: int,
    objective: Callable[[optuna.Trial], float],
    storage: TunedRDBStorage,
    first_beat_done: bool = False,
    created: FrozenTrial | None = None,
) -> Outcome:
    """Run ``objective`` on the claimed trial while its heartbeat beats; returns how it ended.

    ``storage`` records the heartbeats (``first_beat_done``: the claim recorded the first);
    ``created``: the trial as the claim created it, so that it is not read back. An
    exception from the objective ends the trial as FAIL, with the user attribute ``error``
    (its type and message) and a log line; TrialPruned ends it as PRUNED. After running out of
    GPU memory, torch's cached GPU memory is released (``Outcome.gpu_failure`` says so).
    """
    trial = trial_handle(study, trial_id, created)
    value: float | None = None
    state: TrialState | None = None  # None: COMPLETE if the value is a finite number, else FAIL
    error: str | None = None
    gpu_failure: GpuFailure | None = None
    with heartbeat_thread(storage, trial_id, first_beat_done=first_beat_done):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except HandBack as exc:  # on purpose: a line, not a traceback
            state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
            log.info("trial %s handed back: %s", trial.number, exc)
        except Exception as exc:
            state, error, gpu_failure = TrialState.FAIL, f"{type(exc).__name__}: {exc}", classify(exc)
            log.warning("trial %s failed: %r", trial.number, exc, exc_info=True)
            if gpu_failure is GpuFailure.OUT_OF_MEMORY:
                release_cached_memory()  # so that sibling slots on the same GPU are not starved
        except BaseException:
            tell(study, trial, None, TrialState.FAIL)
            raise
    if state is None and not (isinstance(value, int | float) and math.isfinite(value)):
        error = f"the objective returned {value!r}, not a finite number"
    if error is not None:
        storage.set_user_attrs_on_finish(trial_id, {"error": error[:ERROR_CHARS]})  # committed with the FAIL
    told, failure = tell(study, trial, value, state)
    if failure is not None:
        log.warning("trial %s failed: %s", trial.number, failure)
    return Outcome(told, error, gpu_failure)
