"""ResilientRDBStorage's additions to Optuna's RDBStorage, on PostgreSQL and SQLite."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from service.budget import progress
from service.database import get_engine, session_scope
from service.spec import StudySpec
from service.storage import get_storage
from service.studies import create_study
from tests.conftest import make_spec


def new_running_trial(url: str, heartbeat_interval: int = 10) -> tuple[optuna.storages.RDBStorage, int]:
    """A study with one RUNNING trial, and the heartbeat-enabled storage it was made through."""
    create_study(url=url, spec=StudySpec.model_validate(make_spec("s")))
    storage = get_storage(url, heartbeat_interval, 2)
    study_id = storage.get_study_id_from_name("s")
    return storage, storage.create_new_trial(study_id)


def test_attributes_set_on_finish_commit_with_the_final_state(db_url):
    storage, trial_id = new_running_trial(db_url)
    storage.set_user_attrs_on_finish(trial_id, {"config": {"lr": 0.1}})
    storage.set_user_attrs_on_finish(trial_id, {"metrics": {"test_accuracy": 0.4}})
    assert storage.get_trial(trial_id).user_attrs == {}  # nothing written while it runs

    assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert trial.user_attrs == {"config": {"lr": 0.1}, "metrics": {"test_accuracy": 0.4}}


def test_attributes_on_finish_are_dropped_when_someone_else_finished_the_trial(db_url):
    storage, trial_id = new_running_trial(db_url)
    other = optuna.storages.RDBStorage(db_url, skip_table_creation=True)  # e.g. a sweeper failing it as stale
    other.set_trial_state_values(trial_id, TrialState.FAIL)
    other.engine.dispose()

    storage.set_user_attrs_on_finish(trial_id, {"metrics": {"test_accuracy": 0.4}})
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and trial.user_attrs == {}


def test_several_user_attributes_in_one_call_overwrite_earlier_values(db_url):
    storage, trial_id = new_running_trial(db_url)
    storage.set_trial_user_attrs(trial_id, {"worker": "a:1", "checkpoint": "x.pt"})
    storage.set_trial_user_attrs(trial_id, {"worker": "b:2"})
    assert storage.get_trial(trial_id).user_attrs == {"worker": "b:2", "checkpoint": "x.pt"}


def test_a_heartbeat_is_one_row_that_moves_forward(db_url):
    storage, trial_id = new_running_trial(db_url)
    beats = "SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :t"
    storage.record_heartbeat(trial_id)
    with get_engine(db_url).connect() as connection:
        first = connection.execute(text(beats), {"t": trial_id}).scalars().all()
    time.sleep(1.1)  # SQLite's CURRENT_TIMESTAMP has one-second resolution
    storage.record_heartbeat(trial_id)
    with get_engine(db_url).connect() as connection:
        second = connection.execute(text(beats), {"t": trial_id}).scalars().all()
    assert len(first) == len(second) == 1
    assert second[0] > first[0]


def test_stale_trials_are_looked_for_at_most_once_per_heartbeat_interval(pg_url):
    storage, trial_id = new_running_trial(pg_url, heartbeat_interval=1)
    storage.record_heartbeat(trial_id)
    with get_engine(pg_url).begin() as connection:  # its worker went quiet a minute ago
        connection.execute(text("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 minute'"))
    study_id = storage.get_study_id_from_name("s")
    assert storage._get_stale_trial_ids(study_id) == [trial_id]
    assert storage._get_stale_trial_ids(study_id) == []  # asked again within the interval: not looked
    time.sleep(1.05)
    assert storage._get_stale_trial_ids(study_id) == [trial_id]


def test_a_running_trial_that_never_had_a_heartbeat_turns_stale_after_a_grace_period(db_url):
    # Its worker died between creating the trial and committing the claim's first beat.
    storage, orphan = new_running_trial(db_url, heartbeat_interval=1)
    study_id = storage.get_study_id_from_name("s")
    live = storage.create_new_trial(study_id)
    storage.record_heartbeat(live)
    assert storage._get_stale_trial_ids(study_id) == []  # first seen beatless: could be a claim in flight
    time.sleep(2.1)  # past the grace period (2 s); the live trial's beat is not that old in whole seconds
    storage.record_heartbeat(live)
    create_study(url=db_url, spec=StudySpec.model_validate(make_spec("t")))
    storage._get_stale_trial_ids(storage.get_study_id_from_name("t"))  # another study looked at in between
    assert storage._get_stale_trial_ids(study_id) == [orphan]


def test_an_orphaned_trial_is_failed_and_requeued_by_the_stale_sweep(db_url):
    storage, orphan = new_running_trial(db_url, heartbeat_interval=1)
    study = optuna.load_study(study_name="s", storage=storage)
    optuna.storages.fail_stale_trials(study)
    time.sleep(2.1)
    optuna.storages.fail_stale_trials(study)
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan] == TrialState.FAIL
    assert list(states.values()).count(TrialState.WAITING) == 1  # its retry
    with session_scope(db_url) as session:
        assert progress(session, "s").slots_taken == 1  # the retry takes the orphan's slot, not a new one


def test_checking_that_a_trial_runs_keeps_others_from_finishing_it_until_commit(db_url):
    """The check before attributes are written on finish holds a lock (a row lock; SQLite's write lock)."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from service.trial_writes import trial_is_running

    storage, trial_id = new_running_trial(db_url)
    other = create_engine(db_url, connect_args={"timeout": 0.2} if db_url.startswith("sqlite") else {})
    fail = text("UPDATE trials SET state = 'FAIL' WHERE trial_id = :id")
    with Session(storage.engine) as session:
        assert trial_is_running(session, trial_id)
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
    assert storage.get_trial(trial_id).state == TrialState.FAIL
