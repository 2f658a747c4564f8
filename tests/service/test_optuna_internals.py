"""The contract with Optuna's insides: every private use in service/optuna/ (storage.py,
trials.py, tables.py, pages.py, resilient.py), pinned against the installed Optuna, on PostgreSQL
and SQLite. An Optuna upgrade that breaks one of these assumptions fails here, by name, and
nowhere else. (tests/service/test_optuna_boundary.py keeps those uses inside service/optuna/.)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.db.database import Database, Heartbeat
from service.optuna import storage as internals
from service.optuna import tables, trials
from service.optuna.resilient import build_storage
from service.optuna.trial_cache import trial_cache
from service.scheduling.budget import Budget, Progress, read_budget
from service.spec.schema import StudySpec
from service.studies.lifecycle import create_study
from tests.conftest import make_spec

Setup = tuple[Database, int]  # a database holding study "s", and one RUNNING trial of it


def heartbeat_db(url: str, interval: int = 10) -> Database:
    return Database(url, heartbeat=Heartbeat(interval=interval, grace=2))


def new_study(database: Database, name: str = "s", **overrides) -> int:
    """Create a study through the data layer; returns its Optuna id."""
    with database.sessions() as session:
        create_study(
            session=session, storage=database.storage, spec=StudySpec.model_validate(make_spec(name, **overrides))
        )
        optuna_id = read_budget(session, name)[1]
    assert optuna_id is not None
    return optuna_id


@pytest.fixture
def running(db_url) -> Iterator[Setup]:
    database = heartbeat_db(db_url)
    study_id = new_study(database)
    yield database, database.storage.create_new_trial(study_id)
    database.dispose()


@pytest.fixture
def fast_beats(db_url) -> Iterator[Database]:
    """A database whose trials beat every second and go stale after two."""
    database = heartbeat_db(db_url, interval=1)
    yield database
    database.dispose()


def test_the_installed_optuna_is_the_minor_version_the_adapter_was_written_for():
    assert optuna.__version__.startswith("5.0."), "re-check service/optuna/storage.py against this Optuna"


def test_the_storage_runs_on_the_database_engine_and_its_pool(running: Setup):
    database, trial_id = running
    storage = database.storage
    assert storage.engine is database.engine
    assert storage.scoped_session().get_bind() is database.engine
    assert storage.get_trial(trial_id).state == TrialState.RUNNING  # it works on the shared engine


def test_the_storage_is_built_on_one_connection_at_a_time(pg_url):
    """Optuna's constructor read the schema version on a second connection while its first held a
    transaction: behind PgBouncer, slots starting together each held a server and waited for another."""
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=2)
    try:
        storage = build_storage(engine, heartbeat_interval=1, grace_period=4, reopen=print)  # TimeoutError on two
        assert storage.get_all_studies() == []
    finally:
        engine.dispose()


def test_tables_at_another_optuna_schema_revision_are_refused_with_what_to_run(pg_url):
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'v3.0.0.d'"))
        with pytest.raises(RuntimeError, match=r"revision v3\.0\.0\.d.*hpo migrate"):
            build_storage(engine, heartbeat_interval=None, grace_period=None, reopen=print)
    finally:
        engine.dispose()


def test_attributes_set_on_finish_commit_with_the_final_state(running: Setup):
    storage = running[0].storage
    trial_id = running[1]
    storage.set_user_attrs_on_finish(trial_id, {"config": {"lr": 0.1}})
    storage.set_user_attrs_on_finish(trial_id, {"metrics": {"test_accuracy": 0.4}})
    assert storage.get_trial(trial_id).user_attrs == {}  # nothing written while it runs

    assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert trial.user_attrs == {"config": {"lr": 0.1}, "metrics": {"test_accuracy": 0.4}}


def test_a_note_set_on_finish_is_the_one_optuna_dashboard_reads_and_commits_with_the_final_state(running: Setup):
    from optuna_dashboard._note import get_note_from_system_attrs

    storage, trial_id = running[0].storage, running[1]
    study_id = storage.get_study_id_from_name("s")
    body = "## Trial 0\n\n" + "x" * 5000  # longer than one attribute holds: split into three
    storage.set_note_on_finish(study_id, trial_id, body)
    assert get_note_from_system_attrs(storage.get_study_system_attrs(study_id), trial_id)["body"] == ""

    assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    note = get_note_from_system_attrs(storage.get_study_system_attrs(study_id), trial_id)
    assert note == {"version": 1, "body": body}


def test_attributes_on_finish_are_dropped_when_someone_else_finished_the_trial(running: Setup, db_url):
    storage, trial_id = running[0].storage, running[1]
    other = optuna.storages.RDBStorage(db_url, skip_table_creation=True)  # e.g. a sweeper failing it as stale
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    other.engine.dispose()

    storage.set_user_attrs_on_finish(trial_id, {"metrics": {"test_accuracy": 0.4}})
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and trial.user_attrs == {}


def test_attributes_set_on_report_commit_with_the_epoch_s_value_and_never_on_a_finished_trial(running: Setup, db_url):
    storage, trial_id = running[0].storage, running[1]
    commits = _count_commits(storage)
    storage.set_user_attrs_on_report(trial_id, {"epochs": {"epoch": [1]}})
    assert storage.get_trial(trial_id).user_attrs == {}  # held until the report
    before = len(commits)
    storage.set_trial_intermediate_value(trial_id, 1, 0.3)
    assert len(commits) == before + 1  # the curve rides on the report's transaction
    trial = storage.get_trial(trial_id)
    assert trial.intermediate_values == {1: 0.3} and trial.user_attrs == {"epochs": {"epoch": [1]}}

    other = optuna.storages.RDBStorage(db_url, skip_table_creation=True)  # e.g. a sweeper failing it as stale
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    other.engine.dispose()
    storage.set_user_attrs_on_report(trial_id, {"epochs": {"epoch": [1, 2]}})
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_intermediate_value(trial_id, 2, 0.4)
    assert storage.get_trial(trial_id).user_attrs == {"epochs": {"epoch": [1]}}


def _count_commits(storage: Any) -> list[int]:
    """A list that grows by one at each commit on the storage's engine."""
    commits: list[int] = []
    sqlalchemy.event.listen(storage.engine, "commit", lambda _connection: commits.append(1))
    return commits


def test_several_user_attributes_in_one_call_overwrite_earlier_values(running: Setup):
    storage, trial_id = running[0].storage, running[1]
    storage.set_trial_user_attrs(trial_id, {"worker": "a:1", "checkpoint": "x.pt"})
    storage.set_trial_user_attrs(trial_id, {"worker": "b:2"})
    assert storage.get_trial(trial_id).user_attrs == {"worker": "b:2", "checkpoint": "x.pt"}


def test_a_heartbeat_is_one_row_that_moves_forward(running: Setup):
    database, trial_id = running
    beats = text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :t")
    database.storage.record_heartbeat(trial_id)
    with database.engine.connect() as connection:
        first = connection.execute(beats, {"t": trial_id}).scalars().all()
    time.sleep(1.1)  # SQLite's CURRENT_TIMESTAMP has one-second resolution
    database.storage.record_heartbeat(trial_id)
    with database.engine.connect() as connection:
        second = connection.execute(beats, {"t": trial_id}).scalars().all()
    assert len(first) == len(second) == 1
    assert second[0] > first[0]


def test_the_heartbeat_thread_beats_at_once_and_then_every_interval(fast_beats: Database):
    storage = fast_beats.storage
    trial_id = storage.create_new_trial(new_study(fast_beats))
    count = text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :t")
    with trials.heartbeat_thread(storage, trial_id):
        time.sleep(0.3)
        with fast_beats.engine.connect() as connection:
            assert connection.execute(count, {"t": trial_id}).scalar_one() == 1  # the first beat, at the start
        time.sleep(2.5)  # past the grace period: only the later beats keep it from being stale
        assert trial_id not in storage._get_stale_trial_ids(storage.get_study_id_from_name("s"))


def test_after_a_claim_s_first_beat_the_heartbeat_thread_waits_an_interval(fast_beats: Database):
    storage = fast_beats.storage
    trial_id = storage.create_new_trial(new_study(fast_beats))
    count = text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :t")
    with trials.heartbeat_thread(storage, trial_id, first_beat_done=True):
        time.sleep(0.3)
        with fast_beats.engine.connect() as connection:
            assert connection.execute(count, {"t": trial_id}).scalar_one() == 0  # none yet: the claim's stands
        time.sleep(1.2)
        with fast_beats.engine.connect() as connection:
            assert connection.execute(count, {"t": trial_id}).scalar_one() == 1


def test_stale_trials_are_looked_for_at_most_once_per_heartbeat_interval(pg_url):
    database = heartbeat_db(pg_url, interval=1)
    study_id = new_study(database)
    storage = database.storage
    trial_id = storage.create_new_trial(study_id)
    storage.record_heartbeat(trial_id)
    with database.engine.begin() as connection:  # its worker went quiet a minute ago
        connection.execute(text("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 minute'"))
    assert storage._get_stale_trial_ids(study_id) == [trial_id]
    assert storage._get_stale_trial_ids(study_id) == []  # asked again within the interval: not looked
    time.sleep(1.05)
    assert storage._get_stale_trial_ids(study_id) == [trial_id]
    database.dispose()


def test_a_running_trial_that_never_had_a_heartbeat_turns_stale_after_a_grace_period(fast_beats: Database):
    # Its worker died between claiming the trial and the first beat.
    storage = fast_beats.storage
    study_id = new_study(fast_beats)
    orphan = storage.create_new_trial(study_id)
    live = storage.create_new_trial(study_id)
    storage.record_heartbeat(live)
    assert storage._get_stale_trial_ids(study_id) == []  # first seen beatless: could be a claim in flight
    time.sleep(2.1)  # past the grace period (2 s); the live trial's beat is not that old in whole seconds
    storage.record_heartbeat(live)
    storage._get_stale_trial_ids(new_study(fast_beats, "t"))  # another study looked at in between
    assert storage._get_stale_trial_ids(study_id) == [orphan]


def test_an_orphaned_trial_is_failed_and_requeued_by_the_stale_sweep(fast_beats: Database):
    storage = fast_beats.storage
    orphan = storage.create_new_trial(new_study(fast_beats))
    study = optuna.load_study(study_name="s", storage=storage)
    optuna.storages.fail_stale_trials(study)
    time.sleep(2.1)
    optuna.storages.fail_stale_trials(study)
    states = {trials.trial_id(t): t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL
    assert list(states.values()).count(TrialState.WAITING) == 1  # its retry
    with fast_beats.session() as session:
        assert read_budget(session, "s")[0].slots_taken == 1  # the retry takes the orphan's slot, not a new one


def test_checking_that_a_trial_runs_keeps_others_from_finishing_it_until_commit(running: Setup, db_url):
    """The check before attributes are written on finish holds a lock (a row lock; SQLite's write lock)."""
    database, trial_id = running
    other = create_engine(db_url, connect_args={"timeout": 0.2} if db_url.startswith("sqlite") else {})
    fail = text("UPDATE trials SET state = 'FAIL' WHERE trial_id = :id")
    with Session(database.engine) as session:
        assert internals.trial_is_running(session, trial_id)
        with other.connect() as connection, pytest.raises(OperationalError):
            if not db_url.startswith("sqlite"):
                connection.execute(text("SET lock_timeout = '200ms'"))
            connection.execute(fail, {"id": trial_id})
            connection.commit()
        session.rollback()
    with other.connect() as connection:  # released with the transaction
        connection.execute(fail, {"id": trial_id})
        connection.commit()
    other.dispose()
    assert database.storage.get_trial(trial_id).state == TrialState.FAIL


def test_study_and_budget_stats_agree_with_what_optuna_reports(running: Setup):
    """Counts by state, retries (the RETRY_OF mark) and the best value, read from Optuna's tables;
    the budget's counts, read from indexes, are the same."""
    database, running_id = running
    study = optuna.load_study(study_name="s", storage=database.storage)
    for value in (0.3, 0.6):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=3)(study, study.trials[failed.number])  # a WAITING retry
    retry = next(t for t in study.get_trials() if t.state == TrialState.WAITING)
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == retry.system_attrs[tables.RETRY_OF]

    with database.session() as session:
        budget, optuna_id = read_budget(session, "s")
        progress = Progress.of(session.execute(select(tables.study_stats(session.get_bind().dialect.name, "s"))).one())
    assert optuna_id == study._study_id
    finished = [t for t in study.get_trials() if t.datetime_complete is not None]
    durations_ms = sum((t.datetime_complete - t.datetime_start).total_seconds() * 1000 for t in finished)  # type: ignore[operator]
    assert abs(progress.compute_ms - durations_ms) <= len(finished)  # rounded per trial
    assert replace(progress, compute_ms=0) == Progress(
        {"complete": 2, "pruned": 1, "fail": 1, "running": 1, "waiting": 1}, 1, 0.6
    )
    assert budget == progress.budget == Budget(trials=6, running=1, waiting=1, retries=1)
    assert budget.slots_taken == 5 and budget.finished == 3
    assert running_id in {trials.trial_id(t) for t in study.get_trials(states=(TrialState.RUNNING,))}


def test_trial_ids_and_handles_name_the_storage_rows(running: Setup):
    database, trial_id = running
    study = optuna.load_study(study_name="s", storage=database.storage)
    trial = trials.trial_handle(study, trial_id)
    assert trials.trial_id(trial) == trial_id == trials.trial_id(database.storage.get_trial(trial_id))
    assert database.storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.number) == trial_id


@pytest.mark.parametrize(
    ("value", "state", "told"),
    [(0.7, None, TrialState.COMPLETE), (float("nan"), None, TrialState.FAIL), (None, TrialState.PRUNED, "pruned")],
)
def test_tell_finishes_a_trial_as_optimize_does(running: Setup, value, state, told):
    database, trial_id = running
    study = optuna.load_study(study_name="s", storage=database.storage)
    trial = trials.trial_handle(study, trial_id)
    trial.report(0.5, 1)
    expected = TrialState.PRUNED if told == "pruned" else told
    result, failure = trials.tell(study, trial, value, state)
    assert result == expected and database.storage.get_trial(trial_id).state == expected
    assert (failure is not None) == (expected == TrialState.FAIL)
    assert trials.tell(study, trial, 0.9, None)[0] == expected  # a finished trial is left as it is


def test_the_waiting_queue_pops_the_oldest_trial_once(db):
    study_id = new_study(db, enqueue=[{"lr": 0.001}, {"lr": 0.002}])
    storage = trial_cache(db.storage)
    with db.session() as session:
        queue = tables.waiting_trial_ids(session, study_id)
    first = trials.pop_waiting_trial(storage, queue)
    second = trials.pop_waiting_trial(storage, queue)
    assert first is not None and second is not None
    assert [storage.get_trial(t).system_attrs["fixed_params"] for t in (first, second)] == [
        {"lr": 0.001},
        {"lr": 0.002},
    ]
    assert storage.get_trial(first).state == TrialState.RUNNING
    assert trials.pop_waiting_trial(storage, queue) is None


def test_a_trial_created_through_the_cache_is_seen_by_a_study_on_it(running: Setup):
    database = running[0]
    cached = trial_cache(database.storage)
    study = optuna.load_study(study_name="s", storage=cached)
    created = cached.create_new_trial(study._study_id)
    assert created in {trials.trial_id(t) for t in study.get_trials(deepcopy=False)}


def test_tpe_start_up_counts_the_trials_of_every_hyperband_bracket():
    """Under Hyperband, Optuna hands the sampler a view of the trial's bracket, but TPE reads every
    trial through it (the view filters only get_trials, TPE reads _get_trials): exactly
    n_startup_trials trials are random, though Hyperband (E = 8) puts them in 2 brackets."""
    from service.spec.strategy import build_pruner, build_sampler, trial_seed

    spec = StudySpec.model_validate(make_spec("s", epochs=8, sampler={"name": "tpe", "seed": 3, "n_startup_trials": 4}))
    study = optuna.create_study(study_name="start-up", direction="maximize", pruner=build_pruner(spec))
    was_random = []
    for slot in range(10):
        study.sampler = build_sampler(spec, seed_offset=slot)  # as the worker does for every trial
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        random_lr = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=trial_seed(3, slot))).ask()
        was_random.append(lr == random_lr.suggest_float("lr", 1e-4, 1e-1, log=True))
        for epoch in range(1, 9):
            trial.report(lr * epoch, epoch)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, lr)
    assert {study.pruner._get_bracket_id(study, t) for t in study.trials} == {0, 1}
    assert was_random == [True] * 4 + [False] * 6


def test_the_private_storage_calls_of_the_trial_cache_are_the_ones_retried():
    """Optuna's trial cache calls these by their private names; a suggest during a database
    restart failed its trial when _set_trial_param was not retried (found by benchmarks/chaos.py)."""
    import inspect

    from optuna.storages import _cached_storage

    from service.optuna.resilient import ResilientRDBStorage

    called = set(re.findall(r"_backend\.(_\w+)\(", inspect.getsource(_cached_storage)))
    assert called - {"_create_new_trial"} == set(internals.CACHE_BACKEND_CALLS)  # creation: under the claim's retry
    for name in internals.CACHE_BACKEND_CALLS:
        assert hasattr(getattr(ResilientRDBStorage, name), "retry"), name  # tenacity's wrapper


def test_a_claimed_trial_the_cache_never_saw_takes_parameters_once_cached(db):
    """The claim pops by SQL, not through the cache; a sampler that reads no trials (random) then
    sets parameters through a cache that must know the trial: cache_claimed_trial adds it."""
    study_id = new_study(db, enqueue=[{"lr": 0.001}])
    storage = trial_cache(db.storage)
    study = optuna.load_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler())
    with db.session() as session:
        popped = trials.pop_waiting_trial(storage, tables.waiting_trial_ids(session, study_id))
    assert popped is not None
    trials.cache_claimed_trial(storage, study_id, trials.ClaimedTrial(popped, None, in_claim_transaction=False))
    trial = trials.trial_handle(study, popped)
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == 0.001
    assert trial.suggest_float("momentum", 0.8, 0.99) == storage.get_trial(popped).params["momentum"]
    study.tell(trial, 0.7)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.COMPLETE]


def test_a_page_holds_what_optuna_itself_reads_for_those_trials(api, db):
    """service/optuna/pages.py reads Optuna's tables itself: every part of a trial must come back as
    Optuna's loader returns it, special values (infinities, NaN) and each kind of distribution included."""
    from service.optuna.pages import trials_page
    from service.studies.trials import trial_as_dict

    api.post("/studies", json=make_spec())
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    for i in range(4):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("depth", 1, 8)
        trial.suggest_categorical("optimizer", ["adam", "sgd", None])
        trial.report(float("nan") if i == 1 else 0.1 * i, step=1)
        trial.report(float("-inf") if i == 2 else 0.2, step=2)
        trial.set_user_attr("metrics", {"val_accuracy": 0.5, "nested": [1, 2]})
        study.tell(trial, [0.3, float("inf"), None, None][i], state=None if i < 2 else optuna.trial.TrialState.PRUNED)
    study.enqueue_trial({"lr": 0.01})
    expected = study.get_trials(deepcopy=False)
    with db.engine.connect() as connection:
        page = trials_page(connection, study._study_id, 0, 10)
    as_json = [json.dumps([trial_as_dict(t) for t in trials], sort_keys=True) for trials in (page, expected)]
    assert as_json[0] == as_json[1]  # compared as text: NaN is not equal to itself
    assert "NaN" in as_json[0] and "-Infinity" in as_json[0]
    assert [(t.distributions, t.system_attrs, t.values) for t in page] == [
        (t.distributions, t.system_attrs, t.values) for t in expected
    ]
    assert [t["number"] for t in api.get("/studies/cifar-search/trials", params={"offset": 3}).json()["trials"]] == [
        3,
        4,
    ]
