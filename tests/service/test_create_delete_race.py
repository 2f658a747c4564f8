"""A create that starts from a study's weights and a delete of that study, racing on PostgreSQL:
one waits for the other's commit and then sees it, so no study is left starting from deleted weights."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from service.database import Database
from service.errors import SpecError, StudyConflictError
from service.models import StudyRecord, StudyStatus
from service.spec import StudySpec
from service.spec_references import hold_init_study
from service.studies import create_study, delete_study
from tests.conftest import make_spec

FINE_TUNE = StudySpec.model_validate(make_spec("ft", init={"kind": "study", "study": "pre"}))
BLOCKED = 0.5  # seconds a call that waits on a row lock is given to show that it waits


def _in_thread(call) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.fixture
def source_study(pg_db: Database) -> Database:
    """``pre``, a study another may start from."""
    with pg_db.sessions() as session:
        create_study(session=session, storage=pg_db.storage, spec=StudySpec.model_validate(make_spec("pre")))
    return pg_db


def test_a_delete_waits_for_a_create_that_holds_its_study_then_refuses(source_study: Database, tmp_path: Path):
    db = source_study
    with db.sessions() as creating:
        hold_init_study(creating, FINE_TUNE)

        def delete() -> None:
            with db.sessions() as session:
                delete_study(session=session, storage=db.storage, name="pre", artifact_root=tmp_path)

        thread, errors = _in_thread(delete)
        time.sleep(BLOCKED)
        assert thread.is_alive()  # waiting for the create's transaction
        record = StudyRecord(
            name="ft", spec=FINE_TUNE.model_dump(mode="json"), status=StudyStatus.RUNNING, max_trials=4, priority=0
        )
        creating.add(record)
        creating.commit()
    thread.join(10)
    assert [type(e) for e in errors] == [StudyConflictError]
    with db.sessions() as session:
        assert session.scalar(select(StudyRecord.status).where(StudyRecord.name == "pre")) == StudyStatus.RUNNING


def test_a_create_waits_for_a_delete_of_its_study_then_refuses(source_study: Database):
    db = source_study
    with db.sessions() as deleting:
        deleting.execute(select(StudyRecord.id).where(StudyRecord.name == "pre").with_for_update())
        deleting.execute(update(StudyRecord).where(StudyRecord.name == "pre").values(status=StudyStatus.DELETING))

        def hold() -> None:
            with db.sessions() as session:
                hold_init_study(session, FINE_TUNE)

        thread, errors = _in_thread(hold)
        time.sleep(BLOCKED)
        assert thread.is_alive()  # waiting for the delete's transaction
        deleting.commit()
    thread.join(10)
    assert [str(e) for e in errors if isinstance(e, SpecError)] == ["init.study: no study named 'pre'"]
