"""Pause, resume and stop, as seen by real workers."""

from __future__ import annotations

import optuna
import pytest

from service.studies import change_status, get_study
from tests.worker.helpers import (
    assert_exact_budget,
    finish,
    new_study,
    running_trial_past_epoch,
    start_worker,
    trials,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_paused_study_gets_no_trials_until_resumed(pg_url, tmp_path):
    new_study(pg_url, max_trials=2, epochs=1)
    change_status(url=pg_url, name="s", action="pause")
    assert finish(start_worker(pg_url, tmp_path, "--burst")) == 0
    assert trials(pg_url, "s") == []
    change_status(url=pg_url, name="s", action="resume")
    assert finish(start_worker(pg_url, tmp_path, "--burst")) == 0
    assert_exact_budget(pg_url, "s", 2)


def test_stop_ends_running_trials_at_the_next_epoch(pg_url, tmp_path):
    # about a second per epoch, so the trial cannot finish before the worker notices the stop
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "width": 0.25}
    new_study(
        pg_url,
        max_trials=5,
        epochs=12,
        pruner={"name": "none"},
        search_space=space,
        dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 3000},
    )
    worker = start_worker(pg_url, tmp_path, "--burst")
    wait_for(lambda: running_trial_past_epoch(pg_url, "s", 1) is not None, 120, "a running trial")
    change_status(url=pg_url, name="s", action="stop")
    assert finish(worker, timeout=60) == 0
    done = trials(pg_url, "s")
    assert len(done) == 1
    assert done[0].state == optuna.trial.TrialState.PRUNED and done[0].user_attrs["stopped"] is True
    assert len(done[0].intermediate_values) < 12
    assert get_study(url=pg_url, name="s").record.status == "stopped"
