"""The tokens: the admin token may do everything, the viewer token only read, on the API and on
optuna-dashboard (served under /dashboard); /healthz needs none; a blank admin token stops start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings, SettingsError
from tests.conftest import make_spec

ADMIN = "admin-token-0123456789"
VIEWER = "viewer-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secured(pg_url, monkeypatch):
    from service.api import create_app
    from service.settings import get_settings

    monkeypatch.setenv("HPO_API_TOKEN", ADMIN)
    monkeypatch.setenv("HPO_VIEWER_TOKEN", VIEWER)
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        assert client.post("/studies", json=make_spec(), headers=bearer(ADMIN)).status_code == 201
        yield client


def test_token_required_when_set(secured):
    assert secured.get("/studies").status_code == 401
    assert secured.get("/studies", headers=bearer("wrong")).status_code == 401
    answer = secured.post("/studies", json=make_spec("other"))
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert secured.get("/studies/cifar-search", headers=bearer(ADMIN)).status_code == 200
    assert secured.get("/healthz").status_code == 200  # health checks need no token


def test_the_viewer_reads_everything_and_writes_nothing(secured):
    reads = ("/studies", "/studies/cifar-search", "/studies/cifar-search/trials", "/studies/cifar-search/trials.csv")
    for path in (*reads, "/studies/cifar-search/trials.jsonl", "/pretrained", "/studies/cifar-search/report"):
        assert secured.get(path, headers=bearer(VIEWER)).status_code == 200, path
    writes = [
        ("POST", "/studies", make_spec("by-viewer")),
        ("POST", "/studies/cifar-search/pause", None),
        ("POST", "/studies/cifar-search/stop", None),
        ("DELETE", "/studies/cifar-search", None),
    ]
    for method, path, body in writes:
        answer = secured.request(method, path, json=body, headers=bearer(VIEWER))
        assert answer.status_code == 403 and "only read" in answer.json()["detail"], (method, path)
    names = [s["name"] for s in secured.get("/studies", headers=bearer(ADMIN)).json()]
    assert names == ["cifar-search"]
    assert secured.get("/studies/cifar-search", headers=bearer(ADMIN)).json()["status"] == "running"


def test_a_browser_sends_the_token_as_the_basic_password(secured):
    assert secured.get("/studies", auth=("anyone", ADMIN)).status_code == 200
    assert secured.get("/studies", auth=("anyone", "wrong")).status_code == 401


def test_the_dashboard_is_behind_the_same_tokens(secured):
    anonymous = secured.get("/dashboard/studies/1")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert secured.get("/api/studies").status_code == 401
    assert secured.delete("/api/studies/1").status_code == 401

    studies = secured.get("/api/studies", auth=("hpo", VIEWER)).json()["study_summaries"]
    assert [s["study_name"] for s in studies] == ["cifar-search"]
    assert secured.delete("/api/studies/1", auth=("hpo", VIEWER)).status_code == 403
    tell = secured.post("/api/trials/1/tell", json={"state": "Complete", "values": [0.99]}, auth=("hpo", VIEWER))
    assert tell.status_code == 403
    assert secured.get("/studies/cifar-search", headers=bearer(ADMIN)).status_code == 200  # untouched

    page = secured.get("/dashboard/studies/1", auth=("hpo", ADMIN))
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_no_token_needed_when_unset(api):
    assert api.get("/studies").status_code == 200
    assert api.get("/api/studies").status_code == 200  # nor for the dashboard


def test_a_blank_admin_token_stops_start_up_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HPO_API_TOKEN", "  ")
    from service.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="HPO_API_TOKEN is set but blank"):
        get_settings()
    serve = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--port", "9"], capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 2 and "HPO_API_TOKEN is set but blank" in serve.stderr
    assert "Traceback" not in serve.stderr


def test_short_tokens_are_named_for_a_warning_and_a_viewer_needs_an_admin():
    assert Settings(api_token="short", viewer_token="also-short").short_tokens() == [
        "HPO_API_TOKEN",
        "HPO_VIEWER_TOKEN",
    ]
    assert Settings(api_token=ADMIN, viewer_token=VIEWER).short_tokens() == []
    assert Settings(api_token=ADMIN, viewer_token="  ").viewer_token is None  # a blank viewer grants nothing
    with pytest.raises(ValueError, match="needs HPO_API_TOKEN"):
        Settings(viewer_token=VIEWER)
    with pytest.raises(ValueError, match="must differ"):
        Settings(api_token=ADMIN, viewer_token=ADMIN)
