"""The API when the database refuses connections: 503 with Retry-After, then back to normal."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import get_settings
from tests.pg_fixtures import LimitedRole


def test_the_api_answers_503_while_the_server_refuses_connections(
    limited_role: LimitedRole, pg_url: str, monkeypatch: pytest.MonkeyPatch
):
    limited_role.allow(5)
    monkeypatch.setenv("HPO_DATABASE_URL", limited_role.url)
    monkeypatch.setenv("HPO_MIGRATE_DATABASE_URL", pg_url)  # migrations connect as the owner
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        assert client.get("/studies").status_code == 200
        limited_role.allow(0)
        client.app.state.database.engine.dispose()  # no idle connection left: the next request must connect
        refused = client.get("/studies")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "database" in refused.json()["detail"]
        assert client.get("/healthz").status_code == 503
        limited_role.allow(5)
        assert client.get("/studies").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
