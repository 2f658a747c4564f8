"""The API's periodic stale sweep: one query finds the studies that need it; idle ones cost nothing.
And the hand-back of a dead worker process's trials, at once rather than a grace period later."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from sqlalchemy import event

from service.optuna.trials import trial_id
from service.scheduling.sweeper import release_trials_of_dead_worker, sweep_stale_trials
from service.spec.schema import StudySpec
from service.studies.lifecycle import create_study
from tests.conftest import make_spec


def _create(db, name: str) -> None:
    with db.sessions() as session:
        create_study(session=session, storage=db.storage, spec=StudySpec.model_validate(make_spec(name)))


def test_the_stale_sweep_costs_one_query_when_no_study_has_a_running_trial(db):
    for i in range(8):
        _create(db, f"idle-{i}")
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert sweep_stale_trials(db) == 0
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements


def test_the_stale_sweep_visits_the_studies_with_a_running_trial(db):
    _create(db, "busy")
    _create(db, "idle")
    study_id = db.storage.get_study_id_from_name("busy")
    db.storage.create_new_trial(study_id)  # RUNNING
    assert sweep_stale_trials(db) == 1


def test_a_dead_worker_s_trials_alone_are_failed_and_requeued_at_once(db):
    _create(db, "s")
    storage = db.storage
    study_id = storage.get_study_id_from_name("s")
    dead, live = storage.create_new_trial(study_id), storage.create_new_trial(study_id)
    storage.set_trial_user_attr(dead, "worker", "host-a:41")
    storage.set_trial_user_attr(live, "worker", "host-a:4")  # a pid that is a prefix of the dead one's
    storage.set_trial_intermediate_value(dead, 1, 0.3)
    storage.record_heartbeat(dead)  # beating a moment ago: the stale sweep would wait out the grace

    assert release_trials_of_dead_worker(db, "host-a:41") == [dead]
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)
    states = {trial_id(t): t.state for t in trials}
    assert states[dead] == TrialState.FAIL and states[live] == TrialState.RUNNING
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.system_attrs["failed_trial"] == 0 and retry.intermediate_values == {1: 0.3}  # resumes after epoch 1
    assert release_trials_of_dead_worker(db, "host-a:41") == []  # nothing twice
    assert release_trials_of_dead_worker(db, "host-b:41") == []
