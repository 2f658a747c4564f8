"""A create that starts from a study's weights, racing a delete of that study or HPO_KEEP_WEIGHTS
pruning its weights, on PostgreSQL: one waits for the other's commit and then sees it, so no
study is left starting from weights that are gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

from service.artifacts import prune_unpinned_weights
from service.db.database import Database
from service.db.models import StudyRecord, StudyStatus
from service.errors import SpecError, StudyConflictError
from service.spec.references import hold_init_study
from service.spec.schema import StudySpec
from service.studies.lifecycle import create_study, delete_study
from tests.conftest import make_spec

PINNED = {"kind": "study", "study": "pre", "trial": 0, "weights": "pre/trial-0.weights.pt"}
FINE_TUNE = StudySpec.model_validate(make_spec("ft", init=PINNED))
VALUES = {0: 0.5, 1: 0.9}  # pre's trials: with HPO_KEEP_WEIGHTS=1 only trial 1's weights are kept, unless pinned
BLOCKED = 0.5  # seconds a call that waits on a row lock is given to show that it waits


def _waiting(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``call`` in a thread and check that it still waits (for a row lock) after BLOCKED
    seconds; the list gets what it returns or raises."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(BLOCKED)
    assert thread.is_alive()
    return thread, outcome


@pytest.fixture
def source_study(pg_db: Database, tmp_path: Path) -> Database:
    """``pre``, a study another may start from, with the weights of its trials 0 and 1 in tmp_path/pre."""
    with pg_db.sessions() as session:
        create_study(session=session, storage=pg_db.storage, spec=StudySpec.model_validate(make_spec("pre")))
    (tmp_path / "pre").mkdir()
    for number in VALUES:
        (tmp_path / "pre" / f"trial-{number}.weights.pt").write_bytes(b"weights")
    return pg_db


def _insert_fine_tune(session) -> None:
    spec = FINE_TUNE.model_dump(mode="json")
    session.add(StudyRecord(name="ft", spec=spec, status=StudyStatus.RUNNING, max_trials=4, priority=0))
    session.commit()


def _prune(db: Database, root: Path) -> list[int]:
    with db.session() as session:
        return prune_unpinned_weights(session, "pre", root / "pre", 1, VALUES, root)


def _hold(db: Database, root: Path) -> None:
    with db.sessions() as session:
        hold_init_study(session, FINE_TUNE, root)


def test_a_delete_waits_for_a_create_that_holds_its_study_then_refuses(source_study: Database, tmp_path: Path):
    db = source_study
    with db.sessions() as creating:
        hold_init_study(creating, FINE_TUNE, tmp_path)

        def delete() -> None:
            with db.sessions() as session:
                delete_study(session=session, storage=db.storage, name="pre", artifact_root=tmp_path)

        thread, outcome = _waiting(delete)  # for the create's transaction
        _insert_fine_tune(creating)
    thread.join(10)
    assert [type(o) for o in outcome] == [StudyConflictError]
    with db.sessions() as session:
        assert session.scalar(select(StudyRecord.status).where(StudyRecord.name == "pre")) == StudyStatus.RUNNING


def test_a_create_waits_for_a_delete_of_its_study_then_refuses(source_study: Database, tmp_path: Path):
    db = source_study
    with db.sessions() as deleting:
        deleting.execute(select(StudyRecord.id).where(StudyRecord.name == "pre").with_for_update())
        deleting.execute(update(StudyRecord).where(StudyRecord.name == "pre").values(status=StudyStatus.DELETING))
        thread, outcome = _waiting(lambda: _hold(db, tmp_path))  # for the delete's transaction
        deleting.commit()
    thread.join(10)
    assert [str(o) for o in outcome] == ["init.study: no study named 'pre'"]


def test_pruning_waits_for_a_create_that_pins_the_weights_then_spares_them(source_study: Database, tmp_path: Path):
    db = source_study
    with db.sessions() as creating:
        hold_init_study(creating, FINE_TUNE, tmp_path)
        thread, outcome = _waiting(lambda: _prune(db, tmp_path))  # for the create's transaction
        _insert_fine_tune(creating)
    thread.join(10)
    assert outcome == [[]]
    assert (tmp_path / "pre" / "trial-0.weights.pt").is_file()


def test_a_create_waits_for_pruning_then_finds_the_weights_gone(source_study: Database, tmp_path: Path):
    db = source_study
    with db.sessions() as pruning:
        assert prune_unpinned_weights(pruning, "pre", tmp_path / "pre", 1, VALUES, tmp_path) == [0]
        thread, outcome = _waiting(lambda: _hold(db, tmp_path))  # for the pruning's transaction
        pruning.commit()
    thread.join(10)
    assert [type(o) for o in outcome] == [SpecError]
    assert "the weights of study 'pre''s best trial (0) are gone" in str(outcome[0])
