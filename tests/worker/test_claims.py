"""Claiming trials under the study lock, and running a claimed trial (in-process, no training)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from service.spec import StudySpec
from service.storage import get_storage
from service.studies import change_status, create_study
from tests.conftest import make_spec
from worker.picking import claim_trial
from worker.runner import run_claimed

WARM = {"lr": 0.001, "batch_size": 64, "aug_strength": 0.5}


def setup(url: str, **overrides):
    """A study, the worker's Optuna storage on it, and the Study object a worker would hold."""
    create_study(url=url, spec=StudySpec.model_validate(make_spec("s", **overrides)))
    storage = get_storage(url, 10, 60)
    cached = optuna.storages.get_storage(storage)
    return storage, cached, optuna.load_study(study_name="s", storage=cached)


def test_a_claim_creates_a_running_trial_with_its_first_heartbeat_and_worker(db_url):
    storage, cached, _ = setup(db_url, max_trials=2)
    claim = claim_trial(db_url, "s", cached, {"worker": "host:1"})
    assert claim is not None and not claim.popped and claim.beat
    assert claim.progress.slots_taken == 0
    trial = storage.get_trial(claim.trial_id)
    assert trial.state == TrialState.RUNNING and trial.user_attrs == {"worker": "host:1"}
    assert storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), 0) == claim.trial_id
    study_id = storage.get_study_id_from_name("s")
    assert claim.trial_id not in storage._get_stale_trial_ids(study_id)  # it has a fresh heartbeat


def test_waiting_trials_are_claimed_before_new_ones_and_the_budget_is_exact(db_url):
    storage, cached, _ = setup(db_url, max_trials=2, enqueue=[WARM])
    first = claim_trial(db_url, "s", cached, {"worker": "w"})
    second = claim_trial(db_url, "s", cached, {"worker": "w"})
    assert first is not None and first.popped  # the enqueued config, which took its slot when enqueued
    assert storage.get_trial(first.trial_id).system_attrs["fixed_params"] == WARM
    assert second is not None and not second.popped
    assert claim_trial(db_url, "s", cached, {"worker": "w"}) is None  # both slots are taken
    assert len(storage.get_all_trials(storage.get_study_id_from_name("s"))) == 2


def test_a_paused_study_gives_no_claim(db_url):
    _, cached, _ = setup(db_url)
    change_status(url=db_url, name="s", action="pause")
    assert claim_trial(db_url, "s", cached, {"worker": "w"}) is None


@pytest.mark.parametrize(
    ("outcome", "state", "value"),
    [("return", TrialState.COMPLETE, 0.75), ("prune", TrialState.PRUNED, 0.5), ("raise", TrialState.FAIL, None)],
)
def test_a_claimed_trial_ends_in_the_state_its_objective_chose(db_url, outcome, state, value):
    storage, cached, study = setup(db_url)
    claim = claim_trial(db_url, "s", cached, {"worker": "w"})
    assert claim is not None

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 0.1, log=True)
        trial.report(0.5, 1)
        if outcome == "prune":
            raise optuna.TrialPruned()
        if outcome == "raise":
            raise ValueError("boom")
        return 0.75

    assert run_claimed(study, claim.trial_id, objective, storage, beat_first=False) == state
    trial = storage.get_trial(claim.trial_id)
    assert trial.state == state and trial.value == value  # a pruned trial keeps its last reported value
