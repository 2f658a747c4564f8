"""k-fold cross-validation end to end: a 5-fold study through the API and a CPU worker, with
Hyperband pruning; and a retry that resumes every fold of a killed trial from its checkpoint."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from objectives.checkpoint import previous_path
from service.settings import get_settings
from tests.conftest import make_spec
from tests.worker.helpers import assert_exact_budget, dies_after_saving, finish, run_slot, start_worker, trials
from worker.objective import TrialObjective

pytestmark = pytest.mark.slow

DIES_AFTER_EPOCH_2 = dies_after_saving(epoch=2)


def _kfold_spec(name: str, folds: int, **overrides: Any) -> dict:
    dataset = {
        "kind": "imagefolder",
        "path": "cifar10-sample",
        "per_class": 20,
        "validation": {"kind": "kfold", "folds": folds},
    }
    space = {"lr": {"type": "float", "low": 1e-5, "high": 0.05, "log": True}, "batch_size": 64, "width": 0.0625}
    space["eval_shift"] = False  # a fold's final validation accuracy is then its curve's last point
    return make_spec(name, dataset=dataset, search_space=space, **overrides)


def _checkpoint(trial: optuna.trial.FrozenTrial) -> dict:
    return torch.load(Path(trial.user_attrs["checkpoint"]), weights_only=True)


def _checkpoints_gone(trial: optuna.trial.FrozenTrial) -> bool:
    """A finished trial's checkpoints are deleted (nothing resumes it)."""
    latest = Path(trial.user_attrs["checkpoint"])
    return not latest.exists() and not previous_path(latest).exists()


def test_a_five_fold_study_runs_through_the_api_and_a_worker_with_hyperband_pruning(pg_api, pg_db, tmp_path):
    api, db = pg_api, pg_db  # the database's part of k-fold is covered on SQLite too, by the retry below
    spec = _kfold_spec(
        "cv",
        5,
        epochs=4,
        max_trials=12,
        sampler={"name": "random", "seed": 3},
        pruner={"name": "hyperband", "min_resource": 1, "reduction_factor": 2},
    )
    assert api.post("/studies", json=spec).status_code == 201
    worker = start_worker(db, Path(get_settings().artifact_dir), "--trials-per-gpu", "2", "--burst")
    assert finish(worker, timeout=400) == 0
    assert_exact_budget(db, "cv", 12)

    done = trials(db, "cv")
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    assert pruned and complete
    assert any(max(t.intermediate_values) < 4 for t in pruned)  # some before the last epoch
    assert all(_checkpoints_gone(t) for t in done)  # every fold stopped with its trial (tests/objectives)
    for trial in complete:
        metrics = trial.user_attrs["metrics"]
        assert len(metrics["fold_val_accuracies"]) == 5
        assert trial.value == pytest.approx(statistics.fmean(metrics["fold_val_accuracies"]))
        assert trial.intermediate_values[4] == pytest.approx(trial.value)  # the curve: the folds' mean

    best = api.get("/studies/cv/best").json()
    assert best["metrics"]["val_accuracy_std"] == pytest.approx(
        statistics.pstdev(best["metrics"]["fold_val_accuracies"])
    )
    assert best["config"]["dataset"]["validation"] == {"kind": "kfold", "folds": 5, "seed": 0}
    no_model = api.get("/studies/cv/best/model")
    assert no_model.status_code == 404 and "--refit" in no_model.json()["detail"]


def test_a_retry_resumes_every_fold_of_a_killed_trial(api, db):
    spec = _kfold_spec("cv", 3, epochs=3, max_trials=1, pruner={"name": "none"}, sampler={"name": "random", "seed": 1})
    assert api.post("/studies", json=spec).status_code == 201

    @dataclass
    class DiesAfterEpoch2(TrialObjective):
        train_fn: Any = DIES_AFTER_EPOCH_2

    run_slot(db, DiesAfterEpoch2)
    [killed] = trials(db, "cv")
    checkpoint = _checkpoint(killed)  # kept: the trial failed, and its retry resumes from it
    assert checkpoint["epoch"] == 2 and [len(fold["history"]) for fold in checkpoint["folds"]] == [2, 2, 2]
    study = optuna.load_study(study_name="cv", storage=db.storage)
    db.stale_trial_retry()(study, killed)  # what the heartbeat sweep does for a dead worker's trial
    run_slot(db)

    retry = trials(db, "cv")[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 2
    assert sorted(retry.intermediate_values) == [1, 2, 3]
    assert len(retry.user_attrs["metrics"]["fold_val_accuracies"]) == 3
    assert _checkpoints_gone(retry)
