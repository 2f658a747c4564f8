"""The API under races and outages: a study deleted under a reader, concurrent deletes, a
database that stops answering, and creates or deletes cut off half-way."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import optuna
import pytest
from sqlalchemy import text, update

from service.db.database import Database
from service.db.models import StudyRecord
from service.settings import get_settings
from service.spec.schema import StudySpec
from service.studies.cleanup import finish_interrupted
from service.studies.lifecycle import create_study
from tests.conftest import make_spec


def finished_trials(db: Database, name: str, values: tuple[float, ...] = (0.3, 0.5)) -> None:
    study = optuna.load_study(study_name=name, storage=db.storage)
    for value in values:
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.report(value, 1)
        study.tell(trial, value)


def test_of_concurrent_deletes_of_one_study_one_wins_the_rest_find_nothing(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: api.delete("/studies/cifar-search").status_code, range(4)))
    assert codes == [204, 404, 404, 404]
    assert optuna.get_all_study_names(storage=db.storage) == []


def test_reads_racing_deletes_are_404s_never_500s(api, db):
    requests = [
        ("DELETE", "/studies/{name}"),
        ("GET", "/studies/{name}/trials"),
        ("GET", "/studies/{name}/best"),
        ("GET", "/studies/{name}"),
        ("POST", "/studies/{name}/pause"),
        ("GET", "/studies"),
    ]
    for round_number in range(6):
        name = f"race-{round_number}"
        assert api.post("/studies", json=make_spec(name)).status_code == 201
        finished_trials(db, name)
        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(lambda r, n=name: api.request(r[0], r[1].format(name=n)), requests))
        for (method, path), answer in zip(requests, answers, strict=True):
            assert answer.status_code in (200, 204, 404, 409), (method, path, answer.status_code, answer.text)
        assert answers[-1].status_code == 200  # the list is never a 404 because one study went
    assert api.get("/studies").json() == []


def test_a_study_whose_optuna_side_was_deleted_elsewhere_reads_as_empty(api, db):
    assert api.post("/studies", json=make_spec()).status_code == 201
    finished_trials(db, "cifar-search")
    optuna.delete_study(study_name="cifar-search", storage=db.storage)  # e.g. from a stand-alone dashboard
    assert api.get("/studies/cifar-search/trials").json()["total"] == 0
    assert api.get("/studies/cifar-search/best").status_code == 409
    assert api.delete("/studies/cifar-search").status_code == 204
    assert api.get("/studies").json() == []


def test_half_done_creates_and_deletes_are_hidden_then_finished_by_the_sweep(api, db):
    for name in ("old-create", "old-delete", "new-create"):
        with db.sessions() as session:
            create_study(session=session, storage=db.storage, spec=StudySpec.model_validate(make_spec(name)))
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with db.session() as session:  # as a process killed half-way would leave them
        for name, status in (("old-create", "creating"), ("old-delete", "deleting"), ("new-create", "creating")):
            old = long_ago if name.startswith("old") else datetime.now(UTC)
            session.execute(update(StudyRecord).where(StudyRecord.name == name).values(status=status, updated_at=old))
    assert api.get("/studies").json() == []
    assert api.get("/studies/old-create").status_code == 404
    taken = api.post("/studies", json=make_spec("new-create"))
    assert taken.status_code == 409 and "being created" in taken.json()["detail"]

    assert sorted(finish_interrupted(db, get_settings().artifact_dir)) == ["old-create", "old-delete"]
    assert optuna.get_all_study_names(storage=db.storage) == ["new-create"]  # a create still at work stays
    assert api.post("/studies", json=make_spec("old-create")).status_code == 201  # the name is free again


@pytest.fixture
def api_on_pg(pg_url, pg_admin, monkeypatch):
    """The API on a fresh PostgreSQL database, and a switch that stops the database answering."""
    from fastapi.testclient import TestClient

    from service.api import create_app

    name = pg_url.rsplit("/", 1)[1]

    def allow_connections(allowed: bool) -> None:
        with pg_admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                )

    with TestClient(create_app()) as client:
        yield client, allow_connections
        allow_connections(True)


def test_a_database_that_stops_answering_is_a_503_with_retry_after_and_nothing_half_written(api_on_pg):
    api, allow_connections = api_on_pg
    assert api.post("/studies", json=make_spec("before")).status_code == 201
    allow_connections(False)
    for method, path, body in [
        ("GET", "/studies", None),
        ("GET", "/studies/before", None),
        ("GET", "/studies/before/trials", None),
        ("GET", "/studies/before/best", None),
        ("POST", "/studies/before/pause", None),
        ("POST", "/studies", make_spec("during")),
        ("DELETE", "/studies/before", None),
    ]:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 503, (method, path, answer.status_code, answer.text)
        assert int(answer.headers["Retry-After"]) > 0
    assert api.get("/healthz").status_code == 503
    allow_connections(True)
    assert [s["name"] for s in api.get("/studies").json()] == ["before"]  # "during" was never half-made
    assert api.get("/studies/before").json()["status"] == "running"
    assert api.post("/studies", json=make_spec("during")).status_code == 201


def test_the_api_started_while_the_database_is_away_waits_for_it_instead_of_exiting(api_on_pg):
    """Found by benchmarks/chaos.py: an API (re)started during a PostgreSQL restart exited."""
    from fastapi.testclient import TestClient

    from service.api import create_app

    _, allow_connections = api_on_pg
    allow_connections(False)
    started: list[int] = []

    def start() -> None:
        with TestClient(create_app()) as late:
            started.append(late.get("/healthz").status_code)

    starter = threading.Thread(target=start)
    starter.start()
    time.sleep(3)
    assert not started and starter.is_alive()  # still waiting for the database, not exited
    allow_connections(True)
    starter.join(timeout=60)
    assert started == [200]


def test_a_sweep_says_once_that_the_database_is_away_and_once_that_it_is_back(db_url, caplog):
    """The notification dispatcher runs every second: while the database is away it logged a
    traceback each time. Now one line when it goes, one when it is back, whatever the rounds."""
    import asyncio

    from service.api.app import _sweep_forever
    from service.notify.dispatcher import deliver_due

    away = Database("postgresql+psycopg2://postgres@127.0.0.1:1/nothing", role="notify")  # nothing listens there
    here = Database(db_url, role="notify")
    rounds: list[int] = []

    def dispatch() -> None:
        rounds.append(1)
        deliver_due(away if len(rounds) <= 5 else here)  # five rounds of a real connection refused, then served

    async def run_for_a_while() -> None:
        task = asyncio.create_task(_sweep_forever({"notifications": dispatch}, 0.01))
        while len(rounds) < 8:
            await asyncio.sleep(0.01)
        task.cancel()

    with caplog.at_level("INFO", logger="hpo.api"):
        asyncio.run(run_for_a_while())
    away.dispose()
    here.dispose()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "hpo.api"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("notifications: database unavailable (") and "refused" in lines[0][1]
    assert lines[1][1] == "notifications: database available again"
    assert not any(r.exc_info for r in caplog.records)
