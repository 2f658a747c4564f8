"""Killed workers, warm shutdown, and a database restart: nothing finished is lost, budgets stay exact."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

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
LONG = {"epochs": 5, "pruner": {"name": "none"}, "sampler": {"name": "random", "seed": 5}}


def _resumed(url: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(url, "s") if "resumed_from_epoch" in t.user_attrs]


def test_kill_9_of_a_worker_group_is_retried_and_resumed_from_its_checkpoint(pg_db, tmp_path):
    new_study(pg_db, max_trials=4, dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500}, **LONG)
    victim = start_worker(pg_db, tmp_path, "--trials-per-gpu", "2", log=tmp_path / "victim.log")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a trial past epoch 1")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed = {
        t.number: len(t.intermediate_values) for t in trials(pg_db, "s") if t.state == optuna.trial.TrialState.RUNNING
    }
    assert killed, "no trial was running when the worker died"

    rescuer = start_worker(pg_db, tmp_path, "--burst", log=tmp_path / "rescuer.log")
    assert finish(rescuer) == 0
    assert_exact_budget(pg_db, "s", 4)
    done = trials(pg_db, "s")
    failed = {t.number for t in done if t.state == optuna.trial.TrialState.FAIL}
    assert failed == set(killed)  # the killed trials were failed by their stale heartbeat ...
    retries = [t for t in done if "failed_trial" in t.system_attrs]
    assert {t.system_attrs["failed_trial"] for t in retries} == set(killed)  # ... and each was retried once
    for retry in retries:
        assert retry.state == optuna.trial.TrialState.COMPLETE
        assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5]  # inherited epochs kept, the rest run
        reported = killed[retry.system_attrs["failed_trial"]]
        if reported:  # killed after a checkpoint: resumed after it, not from scratch
            assert retry.user_attrs["resumed_from_epoch"] >= reported
    assert any(r.user_attrs.get("resumed_from_epoch", 0) >= 1 for r in retries)


def test_a_slot_killed_mid_trial_has_its_trial_retried_at_once_not_a_heartbeat_grace_later(pg_db, tmp_path):
    new_study(pg_db, max_trials=1, dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500}, **LONG)
    log = tmp_path / "worker.log"
    worker = start_worker(pg_db, tmp_path, "--burst", log=log, env={"HPO_HEARTBEAT_GRACE": "600"})
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a trial past epoch 1")
    victim = running_trial_past_epoch(pg_db, "s", 1)
    assert victim is not None
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)  # the slot, not its supervisor

    # The supervisor saw it die and handed the trial back: retried within seconds, not after 600 s.
    wait_for(lambda: any("failed_trial" in t.system_attrs for t in trials(pg_db, "s")), 30, "the retry")
    assert finish(worker) == 0, log.read_text()
    assert_exact_budget(pg_db, "s", 1)
    first, retry = trials(pg_db, "s")
    assert first.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] >= 1
    assert "handed back trial id(s)" in log.read_text()


def test_sigterm_hands_the_trial_back_and_another_worker_resumes_it(pg_db, tmp_path):
    new_study(pg_db, max_trials=2, dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500}, **LONG)
    first = start_worker(pg_db, tmp_path, log=tmp_path / "first.log")
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a trial past epoch 1")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0  # warm shutdown: the epoch finished, the trial was handed back
    states = [t.state for t in trials(pg_db, "s")]
    assert optuna.trial.TrialState.WAITING in states and optuna.trial.TrialState.RUNNING not in states

    second = start_worker(pg_db, tmp_path, "--burst", log=tmp_path / "second.log")
    assert finish(second) == 0
    assert_exact_budget(pg_db, "s", 2)
    resumed = _resumed(pg_db)
    assert len(resumed) == 1 and resumed[0].user_attrs["resumed_from_epoch"] >= 1


def test_a_second_ctrl_c_kills_the_slots_and_hands_their_trial_back_at_once(pg_db, tmp_path):
    """Stop now (a second SIGINT): the slot is killed mid-epoch, and its trial is failed and
    re-queued as the worker exits, to resume from its checkpoint, not after the heartbeat grace."""
    new_study(pg_db, max_trials=1, dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500}, **LONG)
    log = tmp_path / "worker.log"
    worker = start_worker(pg_db, tmp_path, log=log, env={"HPO_HEARTBEAT_GRACE": "600"})
    wait_for(lambda: running_trial_past_epoch(pg_db, "s", 1) is not None, 120, "a trial past epoch 1")
    worker.send_signal(signal.SIGINT)  # finish the epoch and hand back ...
    # (signals are not queued: two sent at once may arrive as one)
    wait_for(lambda: "SIGINT: finishing current epochs" in log.read_text(), 10, "the first SIGINT")
    worker.send_signal(signal.SIGINT)  # ... no: stop now
    assert worker.wait(timeout=60) == 1, log.read_text()
    assert "second signal: stopping now" in log.read_text()
    first, retry = trials(pg_db, "s")  # the retry is queued by the time the worker has exited
    assert first.state == optuna.trial.TrialState.FAIL and first.intermediate_values
    assert retry.state == optuna.trial.TrialState.WAITING and retry.system_attrs["failed_trial"] == first.number

    rescuer = start_worker(pg_db, tmp_path, "--burst", log=tmp_path / "rescuer.log")
    assert finish(rescuer) == 0
    assert_exact_budget(pg_db, "s", 1)
    assert trials(pg_db, "s")[1].user_attrs["resumed_from_epoch"] >= 1
