"""System 1 of benchmarks/peers.py: this service, run as a user runs it.

``hpo serve`` and ``worker --gpus cpu --trials-per-gpu 2`` as processes on one PostgreSQL
database, the study created through POST /studies with the default search (TPE + Hyperband).
Nothing is replaced: the worker trains with objectives.train, checkpoints every epoch and
writes each epoch's report and curve to the database.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import optuna

from benchmarks.chaos_cluster import api_service, service_env, wait_until_up, worker_service
from benchmarks.peers_faults import FAULT_AT, FAULT_WINDOW_S, kill_a_service_slot, optuna_fate
from benchmarks.peers_optuna_watch import StudyWatch
from benchmarks.peers_race import CONCURRENT, SPACE, Events, Race
from cli.local_api import free_port


def study_spec(race: Race, name: str) -> dict[str, Any]:
    """POST /studies's body: the race's search with the service's default sampler and pruner."""
    return {
        "name": name,
        "dataset": race.dataset,
        "epochs": race.epochs,
        "max_trials": race.max_trials,
        "seed": race.seed,
        "search_space": {**SPACE, "width": race.width},
        "sampler": {"name": "tpe", "seed": race.seed},
    }


def run_service(race: Race, url: str, work: Path) -> list[dict[str, Any]]:
    """Start the API and one worker of two slots, create the study, watch it for the budget; the events."""
    port = free_port()
    env = {**service_env(url, Path(race.data_root), work, port), "HPO_CACHE_DIR": race.cache_dir}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    api, worker = api_service(port, env, logs), worker_service(0, env, logs, CONCURRENT)
    events = Events(started=time.time())
    name = f"peers-service-{race.seed}"
    storage = optuna.storages.RDBStorage(url)
    api.start()
    worker.start()  # together, as `docker compose up` starts them: the worker polls until a study appears
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", 60)
        created = httpx.post(f"http://127.0.0.1:{port}/studies", json=study_spec(race, name), timeout=30)
        created.raise_for_status()
        watch = StudyWatch(storage, name, events)
        fault = None
        if race.fault:
            fault_at = events.started + race.budget_s * FAULT_AT
            watch.watch_until(fault_at, _test_accuracy, race.max_trials)
            # the worker's supervisor starts a new slot; until one has reported an epoch, nothing to kill
            while (fault := kill_a_service_slot(storage, name)) is None and time.time() < fault_at + FAULT_WINDOW_S:
                watch.watch_until(time.time() + 0.5, _test_accuracy, race.max_trials)
            killed_at = time.time() - events.started
        watch.watch_until(events.started + race.budget_s, _test_accuracy, race.max_trials)
    finally:
        for process in (worker, api):
            process.signal_group(signal.SIGKILL)  # a hard stop at the budget, the same for every system
            process.wait(10)
    _add_train_seconds(events.rows, storage, name)
    if race.fault:
        fate = optuna_fate(storage, name, fault["killed_trial"], killed_at, events.rows) if fault else {}
        events.rows.append({"t": killed_at if fault else 0.0, "fault": {**(fault or {"killed_trial": None}), **fate}})
    return events.rows


def _test_accuracy(trial: optuna.trial.FrozenTrial) -> float | None:
    metrics = trial.user_attrs.get("metrics") or {}
    return metrics.get("test_accuracy")


def _add_train_seconds(rows: list[dict[str, Any]], storage: optuna.storages.BaseStorage, name: str) -> None:
    """Each epoch's training-pass seconds, from the curve the worker recorded on its trial."""
    study_id = storage.get_study_id_from_name(name)
    seconds = {
        trial.number: (trial.user_attrs.get("epochs") or {}).get("seconds", [])
        for trial in storage.get_all_trials(study_id, deepcopy=False)
    }
    for row in rows:
        if "epoch" in row:
            curve = seconds.get(row["trial"], [])
            row["train_s"] = curve[row["epoch"] - 1] if row["epoch"] <= len(curve) else 0.0
