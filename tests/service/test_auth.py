"""The bearer token: required everywhere but /healthz when HPO_API_TOKEN is set."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_spec


@pytest.fixture
def secured(pg_url, monkeypatch):
    from service.api import create_app
    from service.settings import get_settings

    monkeypatch.setenv("HPO_API_TOKEN", "s3cret")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client


def test_token_required_when_set(secured):
    assert secured.get("/studies").status_code == 401
    assert secured.get("/studies", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = secured.post("/studies", json=make_spec())
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert secured.get("/studies").status_code == 401
    ok = {"Authorization": "Bearer s3cret"}
    assert secured.post("/studies", json=make_spec(), headers=ok).status_code == 201
    assert secured.get("/studies/cifar-search", headers=ok).status_code == 200
    assert secured.get("/healthz").status_code == 200  # health checks need no token


def test_no_token_needed_when_unset(api):
    assert api.get("/studies").status_code == 200
