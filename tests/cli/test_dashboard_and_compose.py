"""optuna-dashboard on the same database (API and headless browser), and the compose file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from cli.local_api import free_port
from tests.cli.conftest import wait_until_up
from tests.conftest import REPO, make_spec

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts"  # screenshots kept for people to look at
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def finished_study(live_api):
    """A 3-trial study that a real worker completed, one trial pruned by a median pruner."""
    spec = make_spec("dash-study", max_trials=3, epochs=2, pruner={"name": "median", "n_startup_trials": 1})
    headers = {"Authorization": f"Bearer {live_api.env['HPO_API_TOKEN']}"}
    assert httpx.post(f"{live_api.url}/studies", json=spec, headers=headers).status_code == 201
    worker = subprocess.run(
        [sys.executable, "-m", "worker.cli", "--gpus", "cpu", "--burst", "--poll", "0.5"],
        env=live_api.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    study = httpx.get(f"{live_api.url}/studies/dash-study", headers=headers).json()
    return {**study, "worker_log": worker.stdout + worker.stderr}  # for assertion messages


@pytest.fixture
def dashboard(live_api, finished_study):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dashboard", "--port", str(port)],
        env=live_api.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/studies", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_serves_the_study_with_spec_and_learning_curves(dashboard, finished_study):
    studies = httpx.get(f"{dashboard}/api/studies").json()["study_summaries"]
    assert [s["study_name"] for s in studies] == ["dash-study"]
    study_id = studies[0]["study_id"]
    detail = httpx.get(f"{dashboard}/api/studies/{study_id}").json()
    attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert "hpo_spec" in attrs  # the spec, mirrored for people browsing the dashboard
    assert len(detail["trials"]) == 3
    curves = {t["number"]: (t["state"], t["intermediate_values"]) for t in detail["trials"]}
    assert all(values for _, values in curves.values()), (curves, finished_study["worker_log"][-4000:])
    assert finished_study["dashboard_url"].endswith(f"/dashboard/studies/{study_id}")


def test_browser_renders_the_study_and_its_trials(dashboard):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): browser test not run")
    ARTIFACTS.mkdir(exist_ok=True)
    profile = ARTIFACTS / "chromium-profile"
    url = f"{dashboard}/dashboard/studies/1"
    common = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    shot = ARTIFACTS / "dashboard.png"
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert "dash-study" in dom
    assert "Trial" in dom or "trial" in dom
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.parametrize("binary", ["docker-compose"])
def test_compose_file_is_valid_and_reserves_gpus_for_workers(binary):
    if shutil.which(binary) is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose): compose not validated")
    compose = str(REPO / "docker-compose.yml")
    env = {**os.environ, "HPO_API_TOKEN": "t"}
    out = subprocess.run([binary, "-f", compose, "config"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert {"db", "migrate", "api", "dashboard", "worker"} <= set(services)
    assert services["db"]["image"].startswith("postgres")
    assert "healthcheck" in services["db"]
    device = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert services["api"]["environment"]["HPO_API_TOKEN"] == "t"
    missing = subprocess.run(
        [binary, "-f", compose, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "HPO_API_TOKEN"},
    )
    assert missing.returncode != 0 and "HPO_API_TOKEN" in missing.stderr


def test_dockerfile_installs_the_package():
    text = Path(REPO / "Dockerfile").read_text()
    assert "pip install ." in text and "alembic" in text


def test_every_example_spec_and_config_validates():
    import json

    from service.spec import StudySpec, TrainingConfig

    examples = REPO / "examples"
    specs = [p for p in examples.iterdir() if p.suffix in (".yaml", ".json") and p.name != "train-cnn.json"]
    assert len(specs) >= 3
    for path in specs:
        StudySpec.model_validate(yaml.safe_load(path.read_text()))
    TrainingConfig.model_validate(json.loads((examples / "train-cnn.json").read_text()))
