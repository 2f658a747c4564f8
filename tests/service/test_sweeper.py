"""The API's periodic stale sweep: one query finds the studies that need it; idle ones cost nothing."""

from __future__ import annotations

from sqlalchemy import event

from service.scheduling.sweeper import sweep_stale_trials
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
