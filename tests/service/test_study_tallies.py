"""GET /studies counts trials incrementally (service/study_tallies.py): after any sequence of
trial changes its counts equal a full aggregate of Optuna's tables."""

from __future__ import annotations

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import select

from service.budget import Progress
from service.database import Database
from service.optuna_tables import study_stats
from service.spec import StudySpec
from service.studies import create_study
from service.study_tallies import StudyTallies
from tests.conftest import make_spec


def full_count(database: Database) -> dict[int, Progress]:
    """Every study's Progress, aggregated from all of its trials."""
    with database.session() as session:
        return {row.optuna_id: Progress.of(row) for row in session.execute(select(study_stats()))}


def tallied(database: Database, tallies: StudyTallies, ids: list[int]) -> dict[int, Progress]:
    """The same, from the tallies."""
    with database.session() as session:
        return tallies.progress(session, ids)


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
    assert tallied(db, tallies, ids)[a._study_id] == Progress(
        {"complete": 2, "pruned": 1, "fail": 1, "running": 0, "waiting": 0}, 1, 0.9
    )
    optuna.delete_study(study_name="b", storage=db.storage)
    assert list(tallied(db, tallies, [a._study_id])) == [a._study_id]  # a deleted study is forgotten
    check_a = full_count(db)
    assert tallied(db, tallies, [a._study_id]) == check_a
