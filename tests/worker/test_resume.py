"""A retried trial resumes from its lineage's checkpoint and Optuna ends up with every epoch.

The slot loop runs in this process with real training on a few hundred images; the crash is an
exception raised at the one moment a kill -9 can be unlucky: after an epoch's checkpoint is
saved and before that epoch is reported to Optuna.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from objectives.train import train
from service.optuna_storage import stale_trial_retry
from service.settings import get_settings
from tests.worker.helpers import new_study, trials
from worker.objective import TrialObjective
from worker.slot_loop import SlotLoop
from worker.slots import SlotConfig, TrialQuota


class Killed(Exception):
    """Stands in for the worker's death: the slot loop treats it as the trial's failure."""


def _dies_between_saving_epoch_2_and_reporting_it(data: Any, config: Any, **kwargs: Any) -> Any:
    def on_epoch(epoch: int, _loss: float, _accuracy: float) -> None:  # called after the save, before report
        if epoch == 2:
            raise Killed("after the checkpoint of epoch 2")

    return train(data, config, **{**kwargs, "on_epoch": on_epoch})


def _run_slot(db, objective: type[TrialObjective]) -> None:
    slot = SlotConfig(index=0, device="cpu", cuda_visible="", threads=1, study=None, burst=True, poll_seconds=0.05)
    loop = SlotLoop(slot, db, get_settings(), threading.Event(), TrialQuota(None, None), "cpu")
    loop.objective_class = objective
    loop.run()


def test_a_retry_reports_the_epoch_its_checkpoint_holds_and_the_killed_trial_never_reported(db):
    new_study(db, max_trials=1, epochs=3, pruner={"name": "none"}, sampler={"name": "random", "seed": 3})

    @dataclass
    class DiesAfterSaving(TrialObjective):
        train_fn: Any = _dies_between_saving_epoch_2_and_reporting_it

    _run_slot(db, DiesAfterSaving)
    [killed] = trials(db, "s")
    assert killed.state == TrialState.FAIL and sorted(killed.intermediate_values) == [1]

    study = optuna.load_study(study_name="s", storage=db.storage)
    stale_trial_retry(db.engine)(study, killed)  # what the heartbeat sweep does for a dead worker's trial
    _run_slot(db, TrialObjective)

    retry = trials(db, "s")[1]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] == 2
    assert sorted(retry.intermediate_values) == [1, 2, 3]  # epoch 2 came from the checkpoint's history
