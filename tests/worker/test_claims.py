"""Claiming trials under the study lock, and running a claimed trial (in-process, no training)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from service.db.database import Database
from service.optuna.storage import trial_cache
from tests.worker.helpers import new_study, set_status
from worker.claims import claim_trial
from worker.runner import run_claimed

WARM = {"lr": 0.001, "batch_size": 64, "aug_strength": 0.5}


def setup(db: Database, **overrides):
    """A study, the worker's cached Optuna storage on it, and the Study object a worker would hold."""
    new_study(db, **overrides)
    cached = trial_cache(db.storage)
    return cached, optuna.load_study(study_name="s", storage=cached)


def test_a_claim_creates_a_running_trial_with_its_first_heartbeat_and_worker(db):
    cached, _ = setup(db, max_trials=2)
    claim = claim_trial(db, "s", cached, {"worker": "host:1"})
    assert claim is not None and not claim.from_waiting_queue and claim.first_beat_committed
    assert claim.budget.slots_taken == 0
    trial = db.storage.get_trial(claim.trial_id)
    assert trial.state == TrialState.RUNNING and trial.user_attrs == {"worker": "host:1"}
    study_id = db.storage.get_study_id_from_name("s")
    assert db.storage.get_trial_id_from_study_id_trial_number(study_id, 0) == claim.trial_id
    with db.engine.connect() as connection:
        beats = connection.execute(
            text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :t"), {"t": claim.trial_id}
        )
        assert beats.scalar_one() == 1


def test_waiting_trials_are_claimed_before_new_ones_and_the_budget_is_exact(db):
    cached, _ = setup(db, max_trials=2, enqueue=[WARM])
    first = claim_trial(db, "s", cached, {"worker": "w"})
    second = claim_trial(db, "s", cached, {"worker": "w"})
    assert first is not None and first.from_waiting_queue  # the enqueued config, which took its slot when enqueued
    assert db.storage.get_trial(first.trial_id).system_attrs["fixed_params"] == WARM
    assert second is not None and not second.from_waiting_queue
    assert claim_trial(db, "s", cached, {"worker": "w"}) is None  # both slots are taken
    assert len(db.storage.get_all_trials(db.storage.get_study_id_from_name("s"))) == 2


def test_the_trial_cache_holds_each_claimed_trial_as_the_database_does(db):
    """A created trial is cached from what the claim wrote (not read back); a popped one is read."""
    cached, _ = setup(db, max_trials=2, enqueue=[WARM])
    study_id = db.storage.get_study_id_from_name("s")
    for claim in (claim_trial(db, "s", cached, {"worker": "w:1"}), claim_trial(db, "s", cached, {"worker": "w:2"})):
        assert claim is not None
        stored = db.storage.get_trial(claim.trial_id)
        in_cache = cached._studies[study_id].trials[stored.number]  # what the sampler reads until a refresh
        assert in_cache == stored  # every field: number, state, start, params, attributes, values


def test_claimed_and_enqueued_trials_are_numbered_as_optuna_numbers_them(db):
    """A claim numbers its trial itself (from an index); Optuna numbers an enqueued one (by counting):
    mixed, they stay 0, 1, 2, ... in creation order."""
    cached, study = setup(db, max_trials=5)
    for step in ("claim", "enqueue", "claim", "claim", "enqueue", "claim"):  # the claims after an enqueue pop it
        if step == "enqueue":
            study.enqueue_trial(WARM, skip_if_exists=False)
        else:
            assert claim_trial(db, "s", cached, {"worker": "w"}) is not None
    created = sorted(db.storage.get_all_trials(study._study_id, deepcopy=False), key=lambda t: t._trial_id)
    assert [t.number for t in created] == list(range(4))


def test_a_paused_study_gives_no_claim(db):
    cached, _ = setup(db)
    set_status(db, "s", "pause")
    assert claim_trial(db, "s", cached, {"worker": "w"}) is None


def test_a_study_whose_optuna_side_is_gone_gives_no_claim(db):
    cached, _ = setup(db)
    optuna.delete_study(study_name="s", storage=db.storage)  # e.g. deleted from optuna-dashboard
    assert claim_trial(db, "s", cached, {"worker": "w"}) is None


@pytest.mark.parametrize(
    ("outcome", "state", "value"),
    [("return", TrialState.COMPLETE, 0.75), ("prune", TrialState.PRUNED, 0.5), ("raise", TrialState.FAIL, None)],
)
def test_a_claimed_trial_ends_in_the_state_its_objective_chose(db, outcome, state, value):
    cached, study = setup(db)
    claim = claim_trial(db, "s", cached, {"worker": "w"})
    assert claim is not None

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 0.1, log=True)
        trial.report(0.5, 1)
        if outcome == "prune":
            raise optuna.TrialPruned()
        if outcome == "raise":
            raise ValueError("boom")
        return 0.75

    assert run_claimed(study, claim.trial_id, objective, db.storage, claim.first_beat_committed).state == state
    trial = db.storage.get_trial(claim.trial_id)
    assert trial.state == state and trial.value == value  # a pruned trial keeps its last reported value
    assert trial.user_attrs.get("error") == ("ValueError: boom" if outcome == "raise" else None)


def test_a_trial_whose_objective_returns_nan_fails_with_the_reason(db):
    cached, study = setup(db)
    claim = claim_trial(db, "s", cached, {"worker": "w"})
    assert claim is not None
    assert run_claimed(study, claim.trial_id, lambda trial: float("nan"), db.storage).state == TrialState.FAIL
    assert db.storage.get_trial(claim.trial_id).user_attrs["error"] == "the objective returned nan, not a finite number"
