"""Pause, resume and stop, as seen by real workers."""

from __future__ import annotations

import optuna
import pytest

from tests.worker.helpers import (
    HPO_WORKER,
    assert_exact_budget,
    finish,
    new_study,
    running_trial_past_epoch,
    set_status,
    start_worker,
    study_view,
    trials,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_paused_study_gets_no_trials_until_resumed(pg_db, tmp_path):
    new_study(pg_db, max_trials=2, epochs=1)
    set_status(pg_db, "s", "pause")
    assert finish(start_worker(pg_db, tmp_path, "--burst")) == 0
    assert trials(pg_db, "s") == []
    set_status(pg_db, "s", "resume")
    assert finish(start_worker(pg_db, tmp_path, "--burst", command=HPO_WORKER)) == 0  # `hpo worker` this time
    assert_exact_budget(pg_db, "s", 2)


def test_stop_ends_running_trials_at_the_next_epoch(pg_db, tmp_path):
    # about a second per epoch, so the trial cannot finish before the worker notices the stop
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "width": 0.25}
    new_study(
        pg_db,
        max_trials=5,
        epochs=12,
        pruner={"name": "none"},
        search_space=space,
        dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 3000},
    )
    worker = start_worker(pg_db, tmp_path, "--burst")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a running trial")
    set_status(pg_db, "s", "stop")
    assert finish(worker, timeout=60) == 0
    done = trials(pg_db, "s")
    assert len(done) == 1
    assert done[0].state == optuna.trial.TrialState.PRUNED and done[0].user_attrs["stopped"] is True
    assert len(done[0].intermediate_values) < 12
    assert study_view(pg_db, "s").status == "stopped"
