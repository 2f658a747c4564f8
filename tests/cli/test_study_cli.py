"""`hpo study ...` against a live, token-protected API, driving a study a real worker completes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import make_spec

pytestmark = pytest.mark.slow


def hpo(live_api, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=live_api.env, capture_output=True, text=True, timeout=timeout
    )


def test_create_list_best_with_a_worker_completing_the_study(live_api, tmp_path):
    spec = make_spec("cli-study", max_trials=2, epochs=1, pruner={"name": "none"})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))

    created = hpo(live_api, "study", "create", str(spec_file))
    assert created.returncode == 0, created.stderr
    assert "cli-study" in created.stdout and "0/2" in created.stdout

    early = hpo(live_api, "study", "best", "cli-study", "--json")
    assert early.returncode == 2 and "no completed trial yet" in early.stderr and "Traceback" not in early.stderr

    worker = subprocess.run(
        [sys.executable, "-m", "worker.cli", "--gpus", "cpu", "--burst", "--poll", "0.5"],
        env=live_api.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]

    listed = json.loads(hpo(live_api, "study", "list", "--json").stdout)
    assert [(s["name"], s["finished"], s["status"]) for s in listed] == [("cli-study", 2, "completed")]
    assert listed[0]["compute_s"] > 0  # two real trials' training

    best_file = tmp_path / "best.json"
    best = hpo(live_api, "study", "best", "cli-study", "--json", "--config-out", str(best_file))
    assert best.returncode == 0, best.stderr
    answer = json.loads(best.stdout)
    assert set(answer) == {"trial_number", "value", "params", "config", "metrics"}
    assert json.loads(best_file.read_text()) == answer["config"]
    assert answer["config"]["params"]["lr"] == answer["params"]["lr"]

    human = hpo(live_api, "study", "show", "cli-study")
    assert (
        "completed" in human.stdout
        and "2/2" in human.stdout
        and f"compute: {listed[0]['compute_s']:.0f} s" in human.stdout
    )
    page = json.loads(hpo(live_api, "study", "trials", "cli-study", "--json").stdout)
    assert page["total"] == 2 and {t["state"] for t in page["trials"]} == {"complete"}
    assert all(t["error"] is None for t in page["trials"])
    listed_trials = hpo(live_api, "study", "trials", "cli-study")
    assert "trials 1-2 of 2" in listed_trials.stdout and "complete" in listed_trials.stdout
    exported = hpo(live_api, "study", "export", "cli-study", "-o", str(tmp_path / "trials.csv"))
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [(r["number"], r["state"]) for r in rows] == [("0", "complete"), ("1", "complete")]
    assert {float(r["metric.val_accuracy"]) for r in rows} == {t["value"] for t in page["trials"]}
    missing = hpo(live_api, "study", "export", "nowhere", "--format", "jsonl", "-o", str(tmp_path / "x.jsonl"))
    assert missing.returncode == 2 and "no study named 'nowhere'" in missing.stderr
    assert not (tmp_path / "x.jsonl").exists()
    reported = hpo(live_api, "study", "report", "cli-study", "-o", str(tmp_path / "report.html"))
    assert reported.returncode == 0 and "open it in a browser" in reported.stdout, reported.stderr
    assert "<h1>Study cli-study</h1>" in (tmp_path / "report.html").read_text()
    twice = hpo(live_api, "study", "compare", "cli-study", "cli-study", "-o", str(tmp_path / "cmp.html"))
    assert twice.returncode == 2 and "a study named twice" in twice.stderr and not (tmp_path / "cmp.html").exists()

    # the best model, downloaded; and `hpo train` of its config writes the same weights
    downloaded, retrained = tmp_path / "model.pt", tmp_path / "retrained.pt"
    saved = hpo(live_api, "study", "best", "cli-study", "--download", str(downloaded))
    assert saved.returncode == 0 and f"weights saved to {downloaded}" in saved.stdout.replace("\n", ""), saved.stderr
    threads = str(answer["metrics"]["threads"])
    again = hpo(live_api, "train", "--config", str(best_file), "--threads", threads, "--save", str(retrained), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["test_accuracy"] == answer["metrics"]["test_accuracy"]
    first, second = (torch.load(f, weights_only=True) for f in (downloaded, retrained))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    # the refit: the best config trained here on every training image, the validation split included
    refitted = tmp_path / "refit.pt"
    refit = hpo(live_api, "study", "best", "cli-study", "--refit", "--download", str(refitted), "--json")
    assert refit.returncode == 0, refit.stderr
    result = json.loads(refit.stdout)["refit"]
    assert result["val_accuracy"] is None and result["config"]["dataset"]["validation"] == {"kind": "none"}
    assert "400 train / 0 val" in refit.stderr and refitted.exists()


def test_invalid_spec_is_a_clear_error_without_traceback(live_api, tmp_path):
    bad = make_spec("bad", search_space={"lr": {"type": "float", "low": 0.1, "high": 0.01}})
    spec_file = tmp_path / "bad.json"
    spec_file.write_text(json.dumps(bad))
    proc = hpo(live_api, "study", "create", str(spec_file))
    assert proc.returncode == 2
    assert (
        "answered 422" in proc.stderr and "search_space.lr" in proc.stderr and "low (0.1) must be less" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert json.loads(hpo(live_api, "study", "list", "--json").stdout) == []


def test_status_commands_and_delete(live_api, tmp_path):
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps(make_spec("ctl")))
    assert hpo(live_api, "study", "create", str(spec_file)).returncode == 0
    assert json.loads(hpo(live_api, "study", "pause", "ctl", "--json").stdout)["status"] == "paused"
    again = hpo(live_api, "study", "pause", "ctl")
    assert again.returncode == 2 and "409" in again.stderr and "it is paused" in again.stderr
    assert json.loads(hpo(live_api, "study", "resume", "ctl", "--json").stdout)["status"] == "running"
    patched = json.loads(
        hpo(live_api, "study", "patch", "ctl", "--max-trials", "7", "--stop-when", '{"target": 0.9}', "--json").stdout
    )
    assert patched["max_trials"] == 7 and patched["spec"]["stop_when"]["target"] == 0.9
    refused = hpo(live_api, "study", "patch", "ctl", "--stop-when", '{"target": 2}')
    assert refused.returncode == 2 and "422" in refused.stderr and "stop_when.target" in refused.stderr
    assert hpo(live_api, "study", "delete", "ctl").returncode == 0
    gone = hpo(live_api, "study", "show", "ctl")
    assert gone.returncode == 2 and "404" in gone.stderr


def test_wrong_token_and_unreachable_api_are_clear_errors(live_api, tmp_path):
    wrong = subprocess.run(
        [sys.executable, "-m", "cli.main", "study", "list"],
        capture_output=True,
        text=True,
        env={**live_api.env, "HPO_API_TOKEN": "nope"},
        timeout=60,
    )
    assert wrong.returncode == 2 and "401" in wrong.stderr
    down = subprocess.run(
        [sys.executable, "-m", "cli.main", "study", "list"],
        capture_output=True,
        text=True,
        env={**live_api.env, "HPO_API_URL": "http://127.0.0.1:9"},
        timeout=60,
    )
    assert down.returncode == 2 and "cannot reach the API" in down.stderr and "Traceback" not in down.stderr
