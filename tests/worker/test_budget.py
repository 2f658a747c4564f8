"""Exact budgets and pruning with real worker processes on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from objectives.checkpoint import previous_path
from service.artifacts import study_artifact_dir
from tests.worker.helpers import assert_exact_budget, finish, new_study, start_worker, study_view, trials

pytestmark = pytest.mark.slow


def test_four_worker_processes_finish_exactly_twenty_trials(pg_db, tmp_path):
    new_study(pg_db, max_trials=20, epochs=2, pruner={"name": "none"}, sampler={"name": "random", "seed": 1})
    workers = [
        start_worker(pg_db, tmp_path, "--trials-per-gpu", "2", "--burst", log=tmp_path / f"w{i}.log") for i in range(2)
    ]  # 2 workers x 2 slots = 4 worker processes
    assert [finish(w) for w in workers] == [0, 0]
    assert_exact_budget(pg_db, "s", 20)
    assert len(trials(pg_db, "s")) == 20
    distinct = {tuple(sorted(t.params.items())) for t in trials(pg_db, "s")}
    assert len(distinct) == 20  # seeded per slot: no two trials drew the same point


@pytest.mark.parametrize("pruner", [{"name": "hyperband"}, {"name": "median", "n_startup_trials": 2}])
def test_pruning_stops_weak_trials_early(pg_db, tmp_path, pruner):
    epochs, budget = 4, 10
    new_study(
        pg_db,
        max_trials=budget,
        epochs=epochs,
        pruner=pruner,
        sampler={"name": "random", "seed": 3},
        search_space={"lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True}, "width": 0.0625},
    )
    assert finish(start_worker(pg_db, tmp_path, "--burst")) == 0
    assert_exact_budget(pg_db, "s", budget)
    done = trials(pg_db, "s")
    pruned = [t for t in done if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    assert sum(len(t.intermediate_values) for t in done) < budget * epochs
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    record = study_view(pg_db, "s")
    folder = study_artifact_dir(tmp_path, record.id, record.created_at)  # by the study's id, not its name
    assert folder.parent == tmp_path.resolve() and folder.name.startswith(f"study-{record.id}-")
    for trial in pruned:  # finished: nothing resumes it, so its checkpoints are gone
        assert not (folder / f"trial-{trial.number}.pt").exists()
    for trial in complete:  # the recorded attributes of a finished trial
        assert Path(trial.user_attrs["checkpoint"]) == folder / f"trial-{trial.number}.pt"
        assert not (folder / f"trial-{trial.number}.pt").exists()  # its final weights are what is kept
        assert not previous_path(folder / f"trial-{trial.number}.pt").exists()
        assert (folder / f"trial-{trial.number}.weights.pt").is_file()
        assert {"config", "metrics", "worker", "checkpoint"} <= set(trial.user_attrs)
        metrics = trial.user_attrs["metrics"]
        assert {"val_accuracy", "test_accuracy", "epochs", "seconds", "images_per_second", "device"} <= set(metrics)
        assert metrics["val_accuracy"] == trial.value and metrics["epochs"] == 4
        assert trial.user_attrs["config"]["params"]["lr"] == trial.params["lr"]
        assert trial.user_attrs["config"]["device"] == "cpu"  # where it trained: `hpo train`'s default


def test_enqueued_configs_run_first_and_take_slots(pg_db, tmp_path):
    warm = [{"lr": 0.001, "batch_size": 64, "aug_strength": 0.5}, {"lr": 0.01, "batch_size": 32, "aug_strength": 0.0}]
    new_study(pg_db, max_trials=3, epochs=1, enqueue=warm, pruner={"name": "none"})
    assert finish(start_worker(pg_db, tmp_path, "--burst")) == 0
    assert_exact_budget(pg_db, "s", 3)
    done = sorted(trials(pg_db, "s"), key=lambda t: t.number)
    assert [t.params for t in done[:2]] == warm


def test_max_trials_caps_one_worker(pg_db, tmp_path):
    new_study(pg_db, max_trials=10, epochs=1, pruner={"name": "none"})
    assert finish(start_worker(pg_db, tmp_path, "--trials-per-gpu", "2", "--max-trials", "3")) == 0
    assert len(trials(pg_db, "s")) == 3
