"""Stop signals and restarts: a process-group SIGTERM is one warm stop, crash backoff starts afresh."""

from __future__ import annotations

import os
import signal

import pytest
from optuna.trial import TrialState

from tests.worker.helpers import new_study, running_trial_past_epoch, start_worker, trials, wait_for
from worker.signals import HEALTHY_SECONDS, RESTART_BACKOFF, SAME_REQUEST_SECONDS, RestartPolicy, StopKind, StopRequests


def test_a_second_sigterm_soon_after_the_first_is_the_same_request():
    requests = StopRequests()
    assert requests.receive(signal.SIGTERM, now=100.0) is StopKind.WARM
    assert requests.receive(signal.SIGTERM, now=100.0 + SAME_REQUEST_SECONDS / 2) is StopKind.REPEAT
    assert requests.receive(signal.SIGTERM, now=100.0 + SAME_REQUEST_SECONDS + 1) is StopKind.NOW


def test_a_second_ctrl_c_stops_at_once_however_soon():
    requests = StopRequests()
    assert requests.receive(signal.SIGINT, now=5.0) is StopKind.WARM
    assert requests.receive(signal.SIGINT, now=5.1) is StopKind.NOW


def test_restart_backoff_grows_with_crashes_and_starts_afresh_after_a_healthy_run():
    policy = RestartPolicy()
    assert [policy.delay(0, lived_seconds=1) for _ in range(6)] == [*RESTART_BACKOFF, RESTART_BACKOFF[-1]]
    assert policy.delay(1, lived_seconds=1) == RESTART_BACKOFF[0]  # per slot
    assert policy.delay(0, lived_seconds=HEALTHY_SECONDS) == RESTART_BACKOFF[0]  # slot 0 ran well: reset
    assert policy.delay(0, lived_seconds=1) == RESTART_BACKOFF[1]


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_hands_every_trial_back(pg_db, tmp_path):
    """systemd's default: the signal reaches the supervisor and each child, and the supervisor
    passes it on to each child again. Before, the children took the second as "stop now"."""
    new_study(
        pg_db,
        max_trials=4,
        epochs=6,
        pruner={"name": "none"},
        dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500},
    )
    worker = start_worker(pg_db, tmp_path, "--trials-per-gpu", "2", log=tmp_path / "worker.log")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a trial past epoch 1")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=90) == 0
    states = [t.state for t in trials(pg_db, "s")]
    assert TrialState.RUNNING not in states, (tmp_path / "worker.log").read_text()[-3000:]
    assert TrialState.WAITING in states
