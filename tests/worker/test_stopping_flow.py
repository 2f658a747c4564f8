"""Stopping rules and a study changed while it runs, as seen by real workers on CPU: a rule met
completes the study, its running trials end PRUNED at their next epoch with their checkpoints
kept, no trial starts after, and a lowered budget holds from the next claim."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from service.scheduling.stopping import sweep_stop_rules
from service.studies.changes import StudyChange, change_study
from tests.worker.helpers import finish, new_study, running_trial_past_epoch, start_worker, study_view, trials, wait_for

pytestmark = pytest.mark.slow


def test_a_target_met_completes_the_study_and_no_trial_starts_after(pg_db, tmp_path):
    new_study(pg_db, max_trials=6, epochs=1, pruner={"name": "none"}, stop_when={"target": 0.01})
    assert finish(start_worker(pg_db, tmp_path, "--burst")) == 0
    done = trials(pg_db, "s")
    assert [t.state for t in done] == [TrialState.COMPLETE]  # the first trial met the target: nothing after it
    view = study_view(pg_db, "s")
    assert view.status == "completed" and view.status_reason.startswith("stop_when.target: best val_accuracy")
    assert view.progress.finished == 1


def test_the_wall_clock_ends_the_running_trials_pruned_with_their_checkpoints_kept(pg_db, tmp_path):
    # About a second per epoch (as tests/worker/test_control.py's stop), so that no trial can finish in
    # the 2 s a running trial takes to see its study's status: tiny epochs let one complete first.
    new_study(
        pg_db,
        max_trials=4,
        epochs=12,
        pruner={"name": "none"},
        search_space={"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "width": 0.25},
        dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 3000},
        stop_when={"max_wall_clock_s": 2},
    )
    worker = start_worker(pg_db, tmp_path, "--burst", "--trials-per-gpu", "2")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a running trial")
    deadline = time.monotonic() + 60
    while sweep_stop_rules(pg_db) == 0:  # what the API's sweep does every few seconds
        assert time.monotonic() < deadline, "the wall clock never ran out"
        time.sleep(0.5)
    completed_at = time.time()
    assert finish(worker, timeout=120) == 0
    done = trials(pg_db, "s")
    assert 1 <= len(done) <= 2 and all(t.state == TrialState.PRUNED for t in done), [t.state for t in done]
    assert all(t.user_attrs["stopped"] is True and len(t.intermediate_values) < 12 for t in done)
    assert all(Path(t.user_attrs["checkpoint"]).exists() for t in done)  # kept: the study's stop ended them
    assert all(t.datetime_start.timestamp() < completed_at for t in done)  # nothing started after completion
    view = study_view(pg_db, "s")
    assert view.status == "completed" and view.status_reason.startswith("stop_when.max_wall_clock_s")
    assert view.progress.finished == len(done) <= 4


def test_a_lowered_budget_holds_from_the_next_claim(pg_db, tmp_path):
    new_study(pg_db, max_trials=5, epochs=4, pruner={"name": "none"})  # epochs: time to patch before trial 2
    worker = start_worker(pg_db, tmp_path, "--burst")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a running trial")
    with pg_db.sessions() as session:
        change_study(session=session, name="s", change=StudyChange(max_trials=2))
    assert finish(worker) == 0
    assert [t.state for t in trials(pg_db, "s")] == [TrialState.COMPLETE] * 2
    view = study_view(pg_db, "s")
    assert view.status == "completed" and view.max_trials == 2 and view.spec["max_trials"] == 2
