"""Search efficiency: the seed article's full grid against this service's default search.

(a) The seed's method: a grid of 18 configs (3 learning rates x 3 batch sizes x 2 augmentation
    strengths, spanning the search's ranges), each trained for E epochs; it picks the config
    with the best validation accuracy. The target is what that answer is worth: the grid's best
    config retrained with 3 further training seeds, mean validation accuracy (its expected
    quality; the grid's best single run is its luckiest draw of 18).
(b) The service's default search (TPE + Hyperband) over the same ranges, through the real API
    (`hpo serve` in-process), PostgreSQL and one CPU worker of two slots, stopped once a trial
    reaches the target. Epochs are counted across all trials up to the moment the target was
    first reached (each trial's epoch end times interpolated between its start and end).

The grid trains on as many torch threads as a worker slot gets, so both sides see the same
numerics. Ratio per seed: grid epochs / epochs the service needed (0 if it never got there).
Headline: the median over seeds (3 with --quick, 5 by default).

    HPO_DATABASE_URL=postgresql+psycopg2://... python -m benchmarks.search_efficiency [--quick] [--seeds N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime
from typing import Any

import httpx
import optuna
import torch

from benchmarks.common import cache_dir, save, shared_datasets, table
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from objectives.config import TrainingConfig
from objectives.data import load_dataset
from objectives.train import train

GRID: dict[str, list[float]] = {"lr": [1e-4, 3.16e-3, 1e-1], "batch_size": [32, 128, 256], "aug_strength": [0.0, 1.0]}
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
}


def setting(quick: bool) -> tuple[dict[str, Any], float, int]:
    """The dataset spec, CNN width and epochs per trial of a full or a --quick run.

    Both draw from cifar10-full's training images with 1,000 (quick) or 2,000 validation images:
    with the 150-300 of the bundled sample a config's accuracy had a standard error of 3-4 points,
    more than good configs differ by, so the grid's best and the target were mostly noise.
    """
    epochs, limit = (6, 5000) if quick else (8, 10000)
    return {"kind": "imagefolder", "path": "cifar10-full", "limit": limit, "val_fraction": 0.2}, 0.125, epochs


WORKER_SLOTS = 2  # the service side runs one worker with this many slots
RETRAIN_SEEDS = 3  # further training seeds that measure the grid's answer


def slot_threads() -> int:
    """The torch threads one worker slot gets on this machine (worker/slots.py's rule)."""
    return max(1, (os.cpu_count() or 1) // WORKER_SLOTS)


def retrain_seeds(seed: int) -> list[int]:
    """Training seeds for re-measuring the grid's best, distinct from every benchmark seed."""
    return [1000 * (seed + 1) + k for k in range(RETRAIN_SEEDS)]


def run_grid(dataset: dict[str, Any], width: float, epochs: int, seed: int) -> dict[str, Any]:
    """Train every grid config, then retrain the best with further seeds; return the target and costs.

    ``target`` is the mean validation accuracy of the retrained runs; ``best_val`` the best
    single run of the grid. ``epochs`` counts the grid only: the retraining measures its answer.
    """
    torch.set_num_threads(slot_threads())
    data = load_dataset(dataset, data_dir=shared_datasets(), device="cpu", cache_dir=cache_dir())
    started, best, best_config, best_run = time.perf_counter(), 0.0, {}, None
    configs = list(itertools.product(*GRID.values()))
    for lr, batch, aug in configs:
        # eval_shift off: the grid selects on what the service's trials report each epoch (no shifted views)
        params = {"lr": lr, "batch_size": batch, "aug_strength": aug, "width": width, "eval_shift": False}
        config = TrainingConfig.model_validate({"dataset": dataset, "params": params, "epochs": epochs, "seed": seed})
        result = train(data, config, device="cpu")
        if result.val_accuracy > best:
            best, best_config, best_run = result.val_accuracy, params, config
    seconds = time.perf_counter() - started
    assert best_run is not None
    retrained = [
        train(data, best_run.model_copy(update={"seed": s}), device="cpu").val_accuracy for s in retrain_seeds(seed)
    ]
    return {
        "best_val": best,
        "best_config": best_config,
        "retrained_val": retrained,
        "target": statistics.mean(retrained),
        "epochs": epochs * len(configs),
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }


def start_api(url: str) -> tuple[str, Any]:
    """`hpo serve`'s app on ``url`` in a thread on a free port; returns its base URL and server."""
    from cli.local_api import free_port, serve_in_thread

    os.environ["HPO_DATABASE_URL"] = url
    from service.settings import get_settings

    get_settings.cache_clear()
    port = free_port()
    return f"http://127.0.0.1:{port}", serve_in_thread(port)


def epochs_until(trials: list[optuna.trial.FrozenTrial], target: float) -> tuple[int | None, float | None]:
    """Epochs run by all trials until a reported validation accuracy first reached ``target``."""
    events = []  # (time an epoch ended, reached target?)
    for t in trials:
        if not t.intermediate_values or t.datetime_start is None:
            continue
        end = t.datetime_complete or datetime.now()
        steps = sorted(t.intermediate_values)
        span = (end - t.datetime_start).total_seconds() / max(steps[-1], 1)
        base = t.datetime_start.timestamp()
        events += [(base + span * step, t.intermediate_values[step] >= target) for step in steps]
    events.sort()
    first = next((when for when, hit in events if hit), None)
    if first is None:
        return None, None
    return sum(1 for when, _ in events if when <= first), first


def run_service(
    url: str,
    dataset: dict[str, Any],
    width: float,
    epochs: int,
    seed: int,
    target: float,
    max_trials: int,
    workers: int,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the default search through the API until it reaches ``target`` (or its budget)."""
    base, server = start_api(url)
    name = f"search-{seed}-{int(time.time())}"
    spec = {
        "name": name,
        "dataset": dataset,
        "epochs": epochs,
        "max_trials": max_trials,
        "seed": seed,
        "search_space": {**SPACE, "width": width},
        "sampler": {"name": "tpe", "seed": seed},
        **(search or {}),  # only for trying other settings by hand; the benchmark runs the defaults
    }
    api = httpx.Client(base_url=base, timeout=60)
    assert api.post("/studies", json=spec).status_code == 201
    env = {
        **os.environ,
        "HPO_DATABASE_URL": url,
        "HPO_DATA_DIR": str(shared_datasets()),
        "HPO_CACHE_DIR": str(cache_dir()),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "--gpus",
            "cpu",
            "--trials-per-gpu",
            str(workers),
            "--study",
            name,
            "--burst",
            "--poll",
            "0.5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.time()
    from service.db.database import Database

    database = Database(url)
    storage = database.storage
    reached_at = None
    while worker.poll() is None:
        time.sleep(1.0)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        if any(v >= target for t in trials for v in t.intermediate_values.values()):
            reached_at = time.time()
            api.post(f"/studies/{name}/stop")  # running trials end at their next epoch
            break
    worker.wait(timeout=600)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    needed, when = epochs_until(trials, target)
    server.should_exit = True
    database.dispose()
    return {
        "epochs_needed": needed,
        "seconds_needed": (when - started) if when else None,
        "epochs_run": sum(len(t.intermediate_values) for t in trials),
        "trials": len(trials),
        "reached": reached_at is not None,
        "wall_seconds": time.time() - started,
    }


def run_seed(url: str, dataset: dict[str, Any], width: float, epochs: int, seed: int) -> dict[str, Any]:
    """The grid, then the service aiming at the grid's answer's worth, for one seed; prints the row."""
    grid = run_grid(dataset, width, epochs, seed)
    service = run_service(url, dataset, width, epochs, seed, grid["target"], max_trials=60, workers=WORKER_SLOTS)
    row = {
        "seed": seed,
        "grid_best_val": grid["best_val"],
        "retrained_val": [round(v, 3) for v in grid["retrained_val"]],
        "target": grid["target"],
        "grid_epochs": grid["epochs"],
        "grid_seconds": grid["seconds"],
        **service,
        "ratio": grid["epochs"] / service["epochs_needed"] if service["epochs_needed"] else None,
    }
    print(table([row], list(row)), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 seeds of smaller data (about 15 minutes on 2 CPUs)")
    parser.add_argument("--seeds", type=int, help="how many seeds, 0, 1, ... (default 5, or 3 with --quick)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message=".*experimental.*")
    dataset, width, epochs = setting(args.quick)
    if not (shared_datasets() / dataset["path"] / "train").is_dir():
        print(f"search_efficiency needs {shared_datasets() / dataset['path']} (HPO_SHARED_DATASETS)", file=sys.stderr)
        sys.exit(2)
    seeds = list(range(args.seeds if args.seeds is not None else 3 if args.quick else 5))
    server = postgres_server()
    database = create_database(server)
    url = database_url(server, database)
    try:
        rows = [run_seed(url, dataset, width, epochs, seed) for seed in seeds]
    finally:
        drop_database(server, database)
    ratios = [r["ratio"] or 0.0 for r in rows]  # a seed that never reached the target counts as 0
    headline = statistics.median(ratios)
    print(table(rows, list(rows[0])))
    print(f"ratio over {len(rows)} seeds: median {headline:.2f}, mean {statistics.mean(ratios):.2f}")
    path = save(
        "search_efficiency" + ("_quick" if args.quick else ""),
        {
            "rows": rows,
            "median_ratio": headline,
            "mean_ratio": statistics.mean(ratios),
            "grid_threads": slot_threads(),
            "retrain_seeds": RETRAIN_SEEDS,
            "quick": args.quick,
            "epochs": epochs,
            "width": width,
            "dataset": dataset,
            "grid": GRID,
        },
    )
    print(f"results: {path}")
    print(f"search_efficiency median ratio {headline:.1f}")


if __name__ == "__main__":
    main()
