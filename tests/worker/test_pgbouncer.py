"""The whole system through PgBouncer in transaction mode: the path past one server's connection
limit. The API and 4 worker slots connect through it, sharing 2 server connections (a claim that
needed two connections at once would deadlock here); migrations go direct
(HPO_MIGRATE_DATABASE_URL), since their advisory lock belongs to one server session."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.db.database import Database
from service.settings import get_settings
from tests.conftest import make_spec
from tests.pg_fixtures import PgBouncer
from tests.worker.helpers import assert_exact_budget, finish, start_worker


def console(bouncer: PgBouncer, command: str, database: str) -> list[dict[str, Any]]:
    """The rows of a PgBouncer console command (SHOW STATS, SHOW SERVERS) about ``database``."""
    connection = psycopg2.connect(bouncer.console_dsn)
    connection.autocommit = True  # the console knows no BEGIN
    try:
        with connection.cursor() as cursor:
            cursor.execute(command)
            columns = [column.name for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return [row for row in rows if row["database"] == database]


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
    transactions = sum(int(row["total_xact_count"]) for row in console(pgbouncer, "SHOW STATS", database_name))
    assert transactions > 50  # the traffic went through PgBouncer ...
    assert len(console(pgbouncer, "SHOW SERVERS", database_name)) <= 2  # ... on its 2 server connections
