"""GET /studies counts trials incrementally (service/studies/tallies.py): after any sequence of
trial changes its counts equal a full aggregate of Optuna's tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import select, update

from service.db.database import Database
from service.db.models import TallySnapshot
from service.optuna.tables import study_stats
from service.scheduling.budget import Progress
from service.spec.schema import StudySpec
from service.studies.lifecycle import create_study
from service.studies.tallies import StudyTallies
from tests.conftest import make_spec

CREATED = datetime(2026, 11, 30, tzinfo=UTC)  # the studies' records' creation time, as the API passes it


def full_count(database: Database) -> dict[int, Progress]:
    """Every study's Progress, aggregated from all of its trials."""
    with database.session() as session:
        return {
            row.optuna_id: Progress.of(row)
            for row in session.execute(select(study_stats(session.get_bind().dialect.name)))
        }


def tallied(database: Database, tallies: StudyTallies, ids: list[int]) -> dict[int, Progress]:
    """The same, from the tallies."""
    with database.session() as session:
        return tallies.progress(session, dict.fromkeys(ids, CREATED))


def test_tallies_match_a_full_count_through_every_kind_of_trial_change(db: Database):
    for name in ("a", "b"):
        spec = StudySpec.model_validate(make_spec(name, enqueue=[{"lr": 0.001}, {"lr": 0.002}]))
        with db.sessions() as session:
            create_study(session=session, storage=db.storage, spec=spec)
    a, b = (optuna.load_study(study_name=name, storage=db.storage) for name in ("a", "b"))
    tallies = StudyTallies()
    ids = [a._study_id, b._study_id]

    def check() -> None:
        assert tallied(db, tallies, ids) == full_count(db)

    check()  # two WAITING trials each
    first, second = a.ask(), a.ask()  # the queue popped: RUNNING
    check()
    a.tell(first, 0.4)
    a.tell(second, state=TrialState.PRUNED)
    third = a.ask()
    check()
    a.tell(third, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=3)(a, a.trials[third.number])  # a WAITING retry
    check()
    retry = a.ask()
    a.tell(retry, 0.9)
    b.tell(b.ask(), 0.7)
    b.tell(b.ask(), 0.2)
    check()
    assert replace(tallied(db, tallies, ids)[a._study_id], compute_ms=0) == Progress(
        {"complete": 2, "pruned": 1, "fail": 1, "running": 0, "waiting": 0}, 1, 0.9
    )
    optuna.delete_study(study_name="b", storage=db.storage)
    assert list(tallied(db, tallies, [a._study_id])) == [a._study_id]  # a deleted study is forgotten
    check_a = full_count(db)
    assert tallied(db, tallies, [a._study_id]) == check_a


def test_a_study_created_again_under_a_reused_id_starts_from_zero(api, db: Database):
    """SQLite hands a deleted study's ids (its record's, its Optuna study's, its trials') to the next
    ones created; the API must not carry the deleted study's counts or spec over to the new one."""
    assert api.post("/studies", json=make_spec("s", max_trials=8)).status_code == 201
    first = optuna.load_study(study_name="s", storage=db.storage)
    for value in (0.3, 0.6, 0.5):
        first.tell(first.ask(), value)
    assert api.get("/studies/s").json()["counts"]["complete"] == 3
    assert api.delete("/studies/s").status_code == 204
    assert api.post("/studies", json=make_spec("s", max_trials=8, epochs=3)).status_code == 201
    again = optuna.load_study(study_name="s", storage=db.storage)
    again.tell(again.ask(), 0.2)
    shown = api.get("/studies/s").json()
    assert shown["counts"]["complete"] == 1 and shown["best_value"] == 0.2
    assert shown["spec"]["epochs"] == 3  # the new study's spec, not the deleted one's
    assert api.get("/studies/s/best").json()["value"] == 0.2
    assert [s["counts"]["complete"] for s in api.get("/studies").json()] == [1]


def test_a_restarted_api_starts_from_the_saved_tallies_and_reads_only_the_trials_since(db: Database):
    """The tallies' snapshot (hpo_tally_snapshots) stands in for every trial counted before it,
    a running one that finishes later included; a snapshot of another study under the same
    Optuna id (SQLite reuses ids) is ignored."""
    with db.sessions() as session:
        create_study(session=session, storage=db.storage, spec=StudySpec.model_validate(make_spec("a", max_trials=50)))
    study = optuna.load_study(study_name="a", storage=db.storage)
    for value in (0.3, 0.6, 0.5):
        study.tell(study.ask(), value)
    running = study.ask()
    before_restart = StudyTallies()
    tallied(db, before_restart, [study._study_id])
    with db.sessions() as session:
        assert before_restart.save(session) == 1
        assert before_restart.save(session) == 0  # nothing changed since
    study.tell(running, 0.8)
    study.tell(study.ask(), state=TrialState.PRUNED)

    restarted = tallied(db, StudyTallies(), [study._study_id])
    assert restarted == full_count(db)
    assert restarted[study._study_id].best_value == 0.8  # the trial running at the save, finished since

    with db.sessions() as session:  # proof that the trials before the save are not read again
        snapshot = session.get_one(TallySnapshot, study._study_id)
        snapshot.tally = {**snapshot.tally, "finished": {"complete": 103}}
        session.commit()
    assert tallied(db, StudyTallies(), [study._study_id])[study._study_id].counts["complete"] == 104
    with db.session() as session:
        elsewhere = StudyTallies().progress(session, {study._study_id: datetime(2020, 1, 1, tzinfo=UTC)})
    assert elsewhere == full_count(db)  # counted afresh, not from the snapshot of another "created_at"


def test_a_first_count_in_aggregate_matches_a_full_count_and_finds_the_earliest_best(db: Database):
    """A tally that has read nothing counts its study in SQL (one row per finished state, one per
    unfinished trial), then goes on trial by trial; its best trial is the earliest of equals."""
    with db.sessions() as session:
        create_study(session=session, storage=db.storage, spec=StudySpec.model_validate(make_spec("a", max_trials=50)))
    study = optuna.load_study(study_name="a", storage=db.storage)
    running = study.ask()
    for value in (0.4, 0.9, 0.2, 0.9):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[failed.number])  # a WAITING retry
    first_best = study.trials[2]  # trial 0 is running, 2 holds the first 0.9 (4 the second)

    tallies = StudyTallies()
    assert tallied(db, tallies, [study._study_id]) == full_count(db)
    with db.session() as session:
        assert tallies.best_trial_id(session, study._study_id, CREATED) == first_best._trial_id
    study.tell(running, 0.95)
    study.tell(study.ask(), 0.1)  # the retry, popped and finished
    assert tallied(db, tallies, [study._study_id]) == full_count(db)
    with db.session() as session:
        assert tallies.best_trial_id(session, study._study_id, CREATED) == running._trial_id


def set_duration(database: Database, trial: optuna.trial.FrozenTrial | optuna.Trial, seconds: float) -> None:
    """Give a finished trial a known duration (its start and end as Optuna stores them)."""
    start = datetime(2026, 12, 1, 12, 0, 0)
    with database.session() as session:
        trials = models.TrialModel.__table__
        session.execute(
            update(trials)
            .where(trials.c.trial_id == trial._trial_id)
            .values(datetime_start=start, datetime_complete=start + timedelta(seconds=seconds))
        )


def test_compute_time_is_summed_alike_from_scratch_trial_by_trial_and_from_a_snapshot(db: Database):
    """A study's compute time (GET /studies' ``compute_s``) is its finished trials' durations
    summed, whichever way its tally got there; a snapshot saved before tallies summed them
    (no ``compute_ms``) is not trusted: the study is counted afresh."""
    with db.sessions() as session:
        create_study(session=session, storage=db.storage, spec=StudySpec.model_validate(make_spec("a", max_trials=50)))
    study = optuna.load_study(study_name="a", storage=db.storage)
    running = study.ask()
    for seconds, state in ((1.25, TrialState.COMPLETE), (2.5, TrialState.PRUNED), (4.0, TrialState.FAIL)):
        trial = study.ask()
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
        set_duration(db, trial, seconds)
    tallies = StudyTallies()
    assert tallied(db, tallies, [study._study_id])[study._study_id].compute_ms == 7_750  # from scratch
    study.tell(running, 0.7)
    set_duration(db, running, 10.0)
    assert tallied(db, tallies, [study._study_id]) == full_count(db)
    assert full_count(db)[study._study_id].compute_ms == 17_750  # trial by trial, the running one finished
    with db.sessions() as session:
        assert tallies.save(session) == 1
    last = study.ask()
    study.tell(last, 0.1)
    set_duration(db, last, 0.5)
    assert tallied(db, StudyTallies(), [study._study_id])[study._study_id].compute_ms == 18_250  # from the snapshot

    with db.sessions() as session:
        snapshot = session.get_one(TallySnapshot, study._study_id)
        old = {key: value for key, value in snapshot.tally.items() if key != "compute_ms"}
        snapshot.tally = {**old, "finished": {"complete": 103}}
        session.commit()
    recounted = tallied(db, StudyTallies(), [study._study_id])
    assert recounted == full_count(db) and recounted[study._study_id].compute_ms == 18_250
