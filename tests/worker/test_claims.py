"""Claiming trials under the study lock, and running a claimed trial (in-process, no training)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event, text

from service.db.database import Database
from service.optuna.trial_cache import trial_cache
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

    ended = run_claimed(study, claim.trial_id, objective, db.storage, claim.first_beat_committed, claim.created)
    assert ended.state == state
    trial = db.storage.get_trial(claim.trial_id)
    assert trial.state == state and trial.value == value  # a pruned trial keeps its last reported value
    assert trial.user_attrs.get("error") == ("ValueError: boom" if outcome == "raise" else None)


def test_a_trial_whose_objective_returns_nan_fails_with_the_reason(db):
    cached, study = setup(db)
    claim = claim_trial(db, "s", cached, {"worker": "w"})
    assert claim is not None
    assert run_claimed(study, claim.trial_id, lambda trial: float("nan"), db.storage).state == TrialState.FAIL
    assert db.storage.get_trial(claim.trial_id).user_attrs["error"] == "the objective returned nan, not a finite number"


def trial_reads(db: Database) -> list[str]:
    """Statements that read one trial whole, recorded from now on: on a worker's path only Optuna's
    ``get_trial`` reads one trial's system attributes (the trial cache's refresh of a study reads
    those of many trials at once, ``trial_id IN (...)``)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *_) -> None:
        if "FROM trial_system_attributes" in statement and " IN (" not in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    return seen


@pytest.mark.parametrize("known", [True, False])
def test_a_trial_the_claim_created_is_run_and_told_without_being_read_back(db, known):
    """Optuna reads a running trial back whole when its Trial is built and when it is told; the
    worker's trial cache answers both from the trial as the claim created it and as it ran."""
    cached, study = setup(db)
    claim = claim_trial(db, "s", cached, {"worker": "w:1"})
    assert claim is not None and claim.created is not None
    handles: list[optuna.Trial] = []

    def objective(trial: optuna.Trial) -> float:
        handles.append(trial)
        trial.suggest_float("lr", 1e-4, 0.1, log=True)
        trial.report(0.5, 1)
        return 0.75

    reads = trial_reads(db)
    created = claim.created if known else None
    assert run_claimed(study, claim.trial_id, objective, db.storage, True, created).state == TrialState.COMPLETE
    assert (reads == []) == known  # without the created trial, Optuna reads it twice
    stored = db.storage.get_trial(claim.trial_id)
    assert (stored.value, stored.intermediate_values, stored.params) == (0.75, {1: 0.5}, handles[0].params)
    assert (handles[0].number, handles[0].datetime_start) == (stored.number, stored.datetime_start)
    assert handles[0].user_attrs == stored.user_attrs == {"worker": "w:1"}


def test_a_trial_finished_elsewhere_while_it_ran_is_left_as_it_is(db):
    """A trial the stale sweep failed while its objective ran: the in-memory trial says RUNNING,
    the database does not, and the database wins (its retry carries on elsewhere)."""
    cached, study = setup(db)
    claim = claim_trial(db, "s", cached, {"worker": "w:1"})
    assert claim is not None

    def objective(trial: optuna.Trial) -> float:
        trial.report(0.5, 1)
        db.storage.set_trial_state_values(claim.trial_id, TrialState.FAIL)  # as the sweep would
        return 0.75

    outcome = run_claimed(study, claim.trial_id, objective, db.storage, True, claim.created)
    stored = db.storage.get_trial(claim.trial_id)
    assert outcome.state == stored.state == TrialState.FAIL and stored.value is None
