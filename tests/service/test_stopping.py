"""Stopping rules and PATCH /studies/{name} through the API and the data layer, with trials told
by Optuna itself (real workers: tests/worker/test_stopping_flow.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import optuna
import pytest

from service.db.models import StudyRecord
from service.scheduling.stopping import check_stop_rules_of, sweep_stop_rules, wall_clock_s
from tests.conftest import make_spec

LR = optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)


def _told(db, values: list[float | None], name: str = "cifar-search") -> None:
    """Trials told in order: a number completes, None is pruned."""
    study = optuna.load_study(study_name=name, storage=db.storage)
    for value in values:
        trial = study.ask({"lr": LR})
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)


def _check(db, name: str = "cifar-search") -> str | None:
    with db.session() as session:
        return check_stop_rules_of(session, name)


@pytest.mark.parametrize(
    ("stop_when", "field"),
    [
        ({"target": 1.5}, ["body", "stop_when", "target"]),
        ({"target": 0}, ["body", "stop_when", "target"]),
        ({"plateau": {"trials": 0}}, ["body", "stop_when", "plateau", "trials"]),
        ({"max_wall_clock_s": -1}, ["body", "stop_when", "max_wall_clock_s"]),
        ({"max_compute_s": 0}, ["body", "stop_when", "max_compute_s"]),
        ({"deadline": 5}, ["body", "stop_when", "deadline"]),
        ({}, ["body", "stop_when"]),
    ],
)
def test_a_bad_rule_is_a_422_naming_it_and_nothing_is_written(api, stop_when, field):
    answer = api.post("/studies", json=make_spec(stop_when=stop_when))
    assert answer.status_code == 422, answer.text
    assert [error["loc"][: len(field)] for error in answer.json()["detail"]] == [field], answer.json()
    assert api.get("/studies").json() == []


def test_the_target_completes_the_study_with_the_rule_and_its_figure_as_reason(api, db):
    assert api.post("/studies", json=make_spec(stop_when={"target": 0.6})).status_code == 201
    _told(db, [0.5])
    assert _check(db) is None and api.get("/studies/cifar-search").json()["status"] == "running"
    _told(db, [0.62])
    assert _check(db) == "stop_when.target: best val_accuracy 0.6200 reached 0.6"
    study = api.get("/studies/cifar-search").json()
    assert (study["status"], study["status_reason"]) == (
        "completed",
        "stop_when.target: best val_accuracy 0.6200 reached 0.6",
    )
    assert _check(db) is None  # completed once


def test_a_plateau_needs_a_best_before_its_last_trials_and_no_gain_since(api, db):
    spec = make_spec(max_trials=20, stop_when={"plateau": {"trials": 3, "min_delta": 0.01}})
    assert api.post("/studies", json=spec).status_code == 201
    _told(db, [0.3, 0.4, 0.5])
    assert _check(db) is None  # the first trials' progress is not a plateau
    _told(db, [0.505, None])
    assert _check(db) is None  # two trials since 0.5: not yet three
    _told(db, [0.2])
    assert _check(db) == (
        "stop_when.plateau: the last 3 finished trials raised the best val_accuracy by 0.0050 (at most 0.01); "
        "best 0.5050"
    )


def test_compute_counts_every_finished_trial_s_duration(api, db):
    assert api.post("/studies", json=make_spec(stop_when={"max_compute_s": 30})).status_code == 201
    _told(db, [0.4, None])
    with db.session() as session:  # the two trials took 20 s each
        session.execute(
            optuna.storages._rdb.models.TrialModel.__table__.update().values(
                datetime_start=datetime(2026, 1, 1, 12, 0, 0), datetime_complete=datetime(2026, 1, 1, 12, 0, 20)
            )
        )
    assert _check(db) == "stop_when.max_compute_s: 40 s of trials reached 30 s"


def test_the_wall_clock_leaves_paused_time_out_and_the_sweep_checks_it(api, db):
    assert api.post("/studies", json=make_spec(stop_when={"max_wall_clock_s": 3600})).status_code == 201
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    study.ask({"lr": LR})  # running: the clock starts with the first trial
    record = StudyRecord(paused_at=None, paused_seconds=0.0)
    an_hour_ago = datetime.now() - timedelta(hours=1)
    assert 3599 < wall_clock_s(record, an_hour_ago) < 3601
    record.paused_seconds = 1800.0
    assert 1799 < wall_clock_s(record, an_hour_ago) < 1801
    record.paused_at = datetime.now(UTC) - timedelta(minutes=10)  # paused for ten minutes now: the clock stands
    assert 1199 < wall_clock_s(record, an_hour_ago) < 1201

    assert api.post("/studies/cifar-search/pause").status_code == 200
    assert api.post("/studies/cifar-search/resume").status_code == 200
    with db.session() as session:
        paused = session.query(StudyRecord).one()
        assert paused.paused_at is None and 0 <= paused.paused_seconds < 5  # a moment's pause, counted
    assert sweep_stop_rules(db) == 0
    with db.session() as session:  # the first trial started two hours ago
        session.execute(
            optuna.storages._rdb.models.TrialModel.__table__.update().values(
                datetime_start=datetime.now() - timedelta(hours=2)
            )
        )
    assert sweep_stop_rules(db) == 1
    reason = api.get("/studies/cifar-search").json()["status_reason"]
    assert reason.startswith("stop_when.max_wall_clock_s: 72") and reason.endswith("reached 3600 s")


def test_patch_changes_the_budget_and_the_rules_as_a_create_validates_them(api, db):
    assert api.post("/studies", json=make_spec(max_trials=4)).status_code == 201
    _told(db, [0.3, 0.4])
    changed = api.patch("/studies/cifar-search", json={"max_trials": 6, "stop_when": {"target": 0.9}})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["max_trials"] == 6 and body["spec"]["max_trials"] == 6
    assert body["spec"]["stop_when"] == {
        "target": 0.9,
        "plateau": None,
        "max_wall_clock_s": None,
        "max_compute_s": None,
    }
    removed = api.patch("/studies/cifar-search", json={"stop_when": None}).json()
    assert removed["spec"]["stop_when"] is None and removed["max_trials"] == 6  # left out: kept

    below = api.patch("/studies/cifar-search", json={"max_trials": 1})
    assert below.status_code == 422
    assert below.json()["detail"][0]["loc"] == ["body", "max_trials"]
    assert "1 is below the 2 trials started or queued already" in below.json()["detail"][0]["msg"]
    for bad in (
        {"stop_when": {"target": 2}},
        {"max_trials": 0},
        {"name": "other"},
        {"stop_when": {"plateau": {"trials": 0}}},
    ):
        assert api.patch("/studies/cifar-search", json=bad).status_code == 422, bad
    assert api.get("/studies/cifar-search").json()["max_trials"] == 6  # nothing written
    assert api.patch("/studies/nowhere", json={"max_trials": 3}).status_code == 404


def test_a_patched_rule_met_already_completes_the_study_and_a_completed_study_cannot_change(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    _told(db, [0.7])
    answer = api.patch("/studies/cifar-search", json={"stop_when": {"target": 0.5}})
    assert answer.status_code == 200
    assert answer.json()["status"] == "completed" and answer.json()["status_reason"].startswith("stop_when.target")
    again = api.patch("/studies/cifar-search", json={"max_trials": 10})
    assert again.status_code == 409 and "it is completed" in again.text
