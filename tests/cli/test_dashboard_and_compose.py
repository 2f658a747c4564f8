"""optuna-dashboard on the same database (API and headless browser), and the compose file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from cli.local_api import free_port
from tests import browser
from tests.cli.conftest import TOKEN, VIEWER_TOKEN, wait_until_up
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


@pytest.fixture(scope="module")
def finished_study(module_api):
    """Two studies that a real worker completed: ``dash-study`` (3 trials, one pruned by a median
    pruner) and its smaller twin ``dash-twin`` (2 trials), for the dashboard, the report and the comparison."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name, trials in (("dash-study", 3), ("dash-twin", 2)):
        spec = make_spec(name, max_trials=trials, epochs=2, pruner={"name": "median", "n_startup_trials": 1})
        assert httpx.post(f"{module_api.url}/studies", json=spec, headers=headers).status_code == 201
    worker = subprocess.run(
        [sys.executable, "-m", "worker.cli", "--gpus", "cpu", "--burst", "--poll", "0.5"],
        env=module_api.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    study = httpx.get(f"{module_api.url}/studies/dash-study", headers=headers).json()
    return {**study, "worker_log": worker.stdout + worker.stderr}  # for assertion messages


@pytest.fixture
def dashboard(module_api, finished_study):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dashboard", "--port", str(port)],
        env=module_api.env,
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
    assert sorted(s["study_name"] for s in studies) == ["dash-study", "dash-twin"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == "dash-study")
    detail = httpx.get(f"{dashboard}/api/studies/{study_id}").json()
    attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
    assert "hpo_spec" in attrs  # the spec, mirrored for people browsing the dashboard
    assert len(detail["trials"]) == 3
    curves = {t["number"]: (t["state"], t["intermediate_values"]) for t in detail["trials"]}
    assert all(values for _, values in curves.values()), (curves, finished_study["worker_log"][-4000:])
    assert finished_study["dashboard_url"].endswith(f"/dashboard/studies/{study_id}")
    assert detail.get("objective_names") == ["val_accuracy"] or detail.get("metric_names") == ["val_accuracy"]
    # the learning curves of the best trials, drawn by the API's sweep (every 2 s here) as custom plots
    deadline = time.monotonic() + 30
    while not detail["plotly_graph_objects"] and time.monotonic() < deadline:
        time.sleep(1)
        detail = httpx.get(f"{dashboard}/api/studies/{study_id}").json()
    plots = {p["id"]: json.loads(p["graph_object"]) for p in detail["plotly_graph_objects"]}
    assert set(plots) == {"learning-curves", "losses"}
    complete = sorted((t for t in detail["trials"] if t["state"] == "Complete"), key=lambda t: -t["values"][0])
    assert [trace["name"] for trace in plots["learning-curves"]["data"]] == [
        f"#{t['number']} complete" for t in complete
    ]
    for trial in detail["trials"]:  # each complete trial's note: its metrics, config and `hpo train` line
        if trial["state"] == "Complete":
            note = trial["note"]["body"]
            assert f"## Trial {trial['number']}" in note and "| val_accuracy |" in note, note
            assert f"hpo train --config trial-{trial['number']}.json --threads" in note
            config = json.loads(note.split("```json\n")[1].split("\n```")[0])
            searched = {p["name"]: p["param_external_value"] for p in trial["params"]}  # as the dashboard shows them
            assert searched and all(str(config["params"][name]) == value for name, value in searched.items())


def test_a_browser_logs_in_to_the_api_s_dashboard_and_the_viewer_cannot_write(module_api, finished_study):
    """optuna-dashboard served by the API under /dashboard, in Debian's chromium driven by Playwright."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/install_test_tools.sh): browser test not run")
    from playwright.sync_api import sync_playwright

    study_id = finished_study["dashboard_url"].rsplit("/", 1)[1]
    page_url = f"{module_api.url}/dashboard/studies/{study_id}"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS[1:])
        try:
            anonymous = browser.new_context()
            assert anonymous.request.get(page_url).status == 401  # no credentials: refused, asked to log in
            viewer = browser.new_context(http_credentials={"username": "hpo", "password": VIEWER_TOKEN})
            page = viewer.new_page()
            page.goto(page_url)
            page.get_by_text("dash-study").first.wait_for(timeout=30_000)
            page.wait_for_timeout(2_000)  # the learning curves
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert "Trial" in page.content() or "trial" in page.content()
            deleted = page.evaluate(f"fetch('/api/studies/{study_id}', {{method: 'DELETE'}}).then(r => r.status)")
            assert deleted == 403  # the viewer's write, refused ...
            assert anonymous.request.get(f"{module_api.url}/healthz").status == 200
        finally:
            browser.close()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{module_api.url}/studies/dash-study", headers=headers).status_code == 200  # ... nothing deleted
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_a_browser_draws_the_report_and_the_comparison_with_nothing_fetched_elsewhere(
    module_api, finished_study, tmp_path
):
    """The viewer's browser loads the report and the comparison: every plot draws, no console error,
    no request leaves the API; the screenshots are kept under the test's temporary folder."""
    if browser.chromium() is None:
        pytest.skip("Debian's chromium is not installed (scripts/install_test_tools.sh): browser test not run")
    urls = {
        "report": f"{module_api.url}/studies/dash-study/report",
        "comparison": f"{module_api.url}/report?studies=dash-study,dash-twin",
    }
    visits = browser.visit(urls, VIEWER_TOKEN, tmp_path)
    report, comparison = visits["report"], visits["comparison"]
    for seen in visits.values():
        assert seen.errors == []
        assert all(url.startswith(module_api.url) for url in seen.requests), seen.requests
    complete = finished_study["counts"][
        "complete"
    ]  # 3 trials, some perhaps pruned: importances need 8, the page says so
    assert report.messages == [f"importances: Importances need at least 8 complete trials; this study has {complete}."]
    assert set(report.drawn) == {"history", "cost-epochs", "cost-seconds", "parallel", "curves", "losses"}, report.drawn
    assert set(comparison.drawn) == {"cost-epochs", "cost-seconds"} and comparison.messages == []
    assert all(count > 0 for count in [*report.drawn.values(), *comparison.drawn.values()]), visits
    assert (tmp_path / "report.png").stat().st_size > 20_000 and (tmp_path / "comparison.png").exists()


@pytest.mark.parametrize("binary", ["docker-compose"])
def test_compose_file_is_valid_and_reserves_gpus_for_workers(binary):
    if shutil.which(binary) is None:
        pytest.skip("Debian's docker-compose is not installed (scripts/install_test_tools.sh): compose not validated")
    compose = str(REPO / "docker-compose.yml")
    env = {**os.environ, "HPO_API_TOKEN": "t"}
    out = subprocess.run([binary, "-f", compose, "config"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"db", "pgbouncer", "migrate", "api", "worker"}  # no unauthenticated dashboard
    for name in ("api", "worker"):  # through PgBouncer in transaction mode; migrations direct
        assert "@pgbouncer:5432/" in services[name]["environment"]["HPO_DATABASE_URL"]
        assert "@db:5432/" in services[name]["environment"]["HPO_MIGRATE_DATABASE_URL"]
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    published = {name: [_host_and_port(p) for p in s.get("ports", [])] for name, s in services.items()}
    assert published["api"] == [(None, "8000")] and not published["worker"] and not published["migrate"]
    assert not published["pgbouncer"]
    assert published["db"] == [("127.0.0.1", "5432")]  # the database: this host only
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


def _host_and_port(port: str | dict) -> tuple[str | None, str]:
    """(host address or None for all, published port) of a compose port, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port["published"])
    parts = port.split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else None), parts[-2]


def test_dockerfile_installs_the_package():
    text = Path(REPO / "Dockerfile").read_text()
    assert "pip install ." in text and "alembic" in text


def test_every_example_spec_and_config_validates():
    import json

    from objectives.config import TrainingConfig
    from service.spec.schema import StudySpec

    examples = REPO / "examples"
    specs = [p for p in examples.rglob("*") if p.suffix in (".yaml", ".json") and p.name != "train-cnn.json"]
    assert len(specs) >= 6 and (examples / "transfer" / "finetune.yaml") in specs
    for path in specs:
        StudySpec.model_validate(yaml.safe_load(path.read_text()))
    TrainingConfig.model_validate(json.loads((examples / "train-cnn.json").read_text()))
