"""benchmarks/peers.py's tiny mode runs as written for the two systems that need no extra (so the
benchmark cannot rot), and its figures come only from what happened within the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import peers
from benchmarks.peers_race import Race, summarize
from tests.pg_fixtures import PG_URL

REPO = Path(__file__).resolve().parents[2]


def test_the_tiny_mode_runs_the_service_and_plain_optuna_one_trial_each(pg_admin, tmp_path):
    env = {**os.environ, "HPO_TEST_PG_URL": PG_URL, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HPO_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "benchmarks.peers",
        "--tiny",
        "--systems",
        "service,optuna",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "peers time_to_target_ratio" in done.stdout.splitlines()[-1]
    result = json.loads((tmp_path / "peers_tiny.json").read_text())
    rows = {row["system"]: row for row in result["results"][0]["rows"]}
    assert set(rows) == {"service", "optuna"}
    for row in rows.values():
        assert row["finished"] == 1 and row["epochs"] == 2, row  # one trial of two epochs, seen to its end
        assert 0.0 <= row["best_test"] <= 1.0 and row["best_params"]["batch_size"] in (32, 64, 128, 256)
        assert 0 < row["time_to_target_s"] < 120  # the tiny target (0) is met at the first epoch
        assert row["train_s"] > 0 and row["cpu_s"] > row["train_s"]  # every process's CPU, training included
    assert result["median_ratio"]["optuna"] > 0


def test_without_ray_the_ray_systems_say_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(peers, "ray_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["peers", "--tiny", "--systems", "service,ray"])
    assert peers.main() == 2
    assert "pip install -e '.[peers]'" in capsys.readouterr().err


def test_an_unknown_system_is_refused_by_name(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["peers", "--tiny", "--systems", "service,hyperopt"])
    with pytest.raises(SystemExit):
        peers.main()
    assert "hyperopt" in capsys.readouterr().err


def test_only_what_happened_within_the_budget_counts():
    race = Race(dataset={}, data_root="", cache_dir="", width=0.25, epochs=2, budget_s=10.0, target=0.5, seed=0)
    rows = [
        {"t": 2.0, "trial": 0, "epoch": 1, "val": 0.4, "train_s": 1.0},
        {"t": 4.0, "trial": 0, "epoch": 2, "val": 0.45, "train_s": 1.0},
        {"t": 4.1, "trial": 0, "state": "complete", "val": 0.45, "test": 0.44, "params": {"lr": 0.1}},
        {"t": 6.0, "trial": 1, "epoch": 1, "val": 0.3, "train_s": 1.0},
        {"t": 6.1, "trial": 1, "state": "pruned", "val": 0.3, "test": None, "params": {"lr": 0.01}},
        {"t": 11.0, "trial": 2, "epoch": 1, "val": 0.6, "train_s": 1.0},  # past the budget
        {"t": 12.0, "trial": 2, "epoch": 2, "val": 0.7, "train_s": 1.0},
        {"t": 12.1, "trial": 2, "state": "complete", "val": 0.7, "test": 0.69, "params": {"lr": 0.05}},
    ]
    figures = summarize(rows, race)
    assert figures["best_val"] == 0.45 and figures["best_test"] == 0.44 and figures["best_params"] == {"lr": 0.1}
    assert figures["time_to_target_s"] is None  # 0.6 came after the budget
    assert (figures["epochs"], figures["finished"], figures["pruned"], figures["train_s"]) == (3, 1, 1, 3.0)
    assert summarize(rows, Race(**{**race.__dict__, "budget_s": 20.0}))["time_to_target_s"] == 11.0
