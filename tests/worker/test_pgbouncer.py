"""The whole system through PgBouncer in transaction mode: the path past one server's connection
limit. The API and the workers connect through it; migrations go direct (HPO_MIGRATE_DATABASE_URL),
since their advisory lock belongs to one server session."""

from __future__ import annotations

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.api import create_app
from service.database import Database
from service.settings import get_settings
from tests.conftest import make_spec
from tests.pg_fixtures import PgBouncer
from tests.worker.helpers import assert_exact_budget, finish, start_worker


def transactions_through(bouncer: PgBouncer, database: str) -> int:
    """How many transactions PgBouncer has carried to ``database`` (its console's SHOW STATS)."""
    console = psycopg2.connect(bouncer.console_dsn)
    console.autocommit = True  # the console knows no BEGIN
    try:
        with console.cursor() as cursor:
            cursor.execute("SHOW STATS")
            columns = [column.name for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        console.close()
    return sum(int(row["total_xact_count"]) for row in rows if row["database"] == database)


def test_a_study_runs_to_an_exact_budget_through_pgbouncer(
    pg_db: Database, pg_url: str, pgbouncer: PgBouncer, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    through_bouncer = pgbouncer.url_for(pg_url)
    monkeypatch.setenv("HPO_DATABASE_URL", through_bouncer)
    monkeypatch.setenv("HPO_MIGRATE_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    spec = make_spec("bounced", max_trials=5, epochs=2)
    spec["dataset"] = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 300, "val_fraction": 0.2}
    spec["search_space"]["width"] = 0.0625
    with TestClient(create_app()) as api:
        assert api.post("/studies", json=spec).status_code == 201
        bounced = Database(through_bouncer)
        artifacts, slots = tmp_path / "artifacts", ("--trials-per-gpu", "2")
        workers = [start_worker(bounced, artifacts, "--burst", *slots, log=tmp_path / f"w{i}.log") for i in range(2)]
        codes = [finish(proc) for proc in workers]
        logs = "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
        assert codes == [0, 0], logs
        best = api.get("/studies/bounced/best")
        assert best.status_code == 200, best.text
        bounced.dispose()
    assert_exact_budget(pg_db, "bounced", 5)
    database_name = pg_db.engine.url.database
    assert transactions_through(pgbouncer, database_name) > 50  # the traffic went through PgBouncer
    with pg_db.engine.connect() as connection:  # and the server saw no client but PgBouncer and this test
        clients = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        ).scalar_one()
    assert clients <= 8  # default_pool_size: what PgBouncer may open to one database
