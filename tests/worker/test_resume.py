"""A retried trial resumes from its lineage's checkpoint and Optuna ends up with every epoch.

The slot loop runs in this process with real training on a few hundred images; the crash is an
exception raised at the one moment a kill -9 can be unlucky: after an epoch's checkpoint is
saved and before that epoch is reported to Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from tests.worker.helpers import dies_after_saving, new_study, run_slot, trials
from worker.objective import TrialObjective

DIES_AFTER_EPOCH_2 = dies_after_saving(epoch=2)


@dataclass
class DiesAfterSaving(TrialObjective):
    train_fn: Any = DIES_AFTER_EPOCH_2


def killed_after_saving_epoch_2(db: Any) -> optuna.trial.FrozenTrial:
    """Study "s"'s one trial (3 epochs), killed after epoch 2's checkpoint was saved and before it was reported."""
    new_study(db, max_trials=1, epochs=3, pruner={"name": "none"}, sampler={"name": "random", "seed": 3})
    run_slot(db, DiesAfterSaving)
    [killed] = trials(db, "s")
    return killed


def test_a_retry_reports_the_epoch_its_checkpoint_holds_and_the_killed_trial_never_reported(db):
    killed = killed_after_saving_epoch_2(db)
    assert killed.state == TrialState.FAIL and sorted(killed.intermediate_values) == [1]

    study = optuna.load_study(study_name="s", storage=db.storage)
    db.stale_trial_retry()(study, killed)  # what the heartbeat sweep does for a dead worker's trial
    run_slot(db)

    retry = trials(db, "s")[1]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] == 2
    assert sorted(retry.intermediate_values) == [1, 2, 3]  # epoch 2 came from the checkpoint's history
    curve = retry.user_attrs["epochs"]  # the learning curve, those before the resume from the checkpoint too
    assert curve["epoch"] == [1, 2, 3]
    assert curve["val_accuracy"] == [round(v, 5) for _, v in sorted(retry.intermediate_values.items())]
    assert all(loss > 0 for loss in curve["train_loss"] + curve["val_loss"]) and all(curve["images_per_second"])


def test_a_trial_checkpointed_on_a_gpu_resumes_on_a_cpu_worker_and_says_it_reseeded(db):
    """A CUDA generator's state (16 bytes) does not fit a CPU generator: the CPU worker's retry
    resumes from the checkpoint all the same, reseeded, and its checkpoint_note says so."""
    killed = killed_after_saving_epoch_2(db)
    checkpoint = Path(killed.user_attrs["checkpoint"])
    payload = torch.load(checkpoint, weights_only=True)
    for fold in payload["folds"]:  # as a GPU worker would have saved it
        fold["generator"], fold["generator_device"] = torch.arange(16, dtype=torch.uint8), "cuda"
    torch.save(payload, checkpoint)

    study = optuna.load_study(study_name="s", storage=db.storage)
    db.stale_trial_retry()(study, killed)
    run_slot(db)

    retry = trials(db, "s")[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 2
    assert "random generator ran on cuda, this worker trains on cpu: reseeded" in retry.user_attrs["checkpoint_note"]
