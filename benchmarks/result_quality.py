"""Result quality: how good a model does a search with this service find on the full CIFAR-10
training set?

A study with the service's default search over the seed's CNN runs through the API, PostgreSQL
and a worker on ``../shared/datasets/cifar10-full`` (45,000 training images, read in place:
40,500 train / 4,500 validation; its 5,000 held-out images are the test split). The search
selects on validation accuracy; the best trial's test accuracy is the headline. The study gets
a wall-clock budget: when it is spent the study is stopped (running trials end at their next
epoch) and the best completed trial is reported.

    python -m benchmarks.result_quality [--quick] [--minutes M]

``--quick`` (CPU): width 0.25, at most 15 epochs per trial, 20 minutes. The full run (GPU):
width 1.0, at most 30 epochs. It ends with ``result_quality test_accuracy 0.xxx``; the best
config goes to benchmarks/results/result_quality[_quick]_config.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.chaos_cluster import api_service, service_env, wait_until_up, worker_service
from benchmarks.common import REPO, RESULTS, save
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from cli.local_api import free_port

SHARED = REPO.parent / "shared" / "datasets"
FIRST_CONFIG = {"lr": 0.004, "batch_size": 128, "aug_strength": 0.5}  # enqueued: a sound start for TPE


def study_spec(width: float, epochs: int, max_trials: int) -> dict[str, Any]:
    """The default search space (lr, batch size, augmentation) at a fixed width, Hyperband pruning."""
    return {
        "name": "result-quality",
        "dataset": {"kind": "imagefolder", "path": "cifar10-full", "val_fraction": 0.1},
        "search_space": {"width": width},
        "epochs": epochs,
        "max_trials": max_trials,
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 3},
        "pruner": {"name": "hyperband", "min_resource": 2, "reduction_factor": 3},
        "enqueue": [FIRST_CONFIG],
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Serve the study until its budget of time is spent; return the best trial and the totals."""
    width, epochs, minutes = (0.25, 15, 20.0) if args.quick else (1.0, 30, 60.0)
    minutes = args.minutes or minutes
    server = postgres_server()
    database = create_database(server)
    port = free_port()
    env = service_env(database_url(server, database), SHARED, work, port)
    base = f"http://127.0.0.1:{port}"
    api = api_service(port, env, work)
    worker = worker_service(0, env, work, slots=1)
    started = time.monotonic()
    try:
        api.start()
        wait_until_up(base + "/healthz", 60)
        httpx.post(base + "/studies", json=study_spec(width, epochs, args.max_trials), timeout=30).raise_for_status()
        worker.start()
        deadline = started + minutes * 60
        while time.monotonic() < deadline and httpx.get(base + "/studies/result-quality").json()["status"] == "running":
            time.sleep(5)
        httpx.post(base + "/studies/result-quality/stop", timeout=30)
        worker.signal_group(signal.SIGTERM)
        worker.wait(timeout=600)  # the running epoch ends; the trial is stopped (pruned)
        study = httpx.get(base + "/studies/result-quality").json()
        best = httpx.get(base + "/studies/result-quality/best").json()
        trials = httpx.get(base + "/studies/result-quality/trials", params={"limit": 1000}).json()["trials"]
    finally:
        for service in (worker, api):
            service.signal_group(signal.SIGKILL)
        drop_database(server, database)
    epochs_run = sum(len(t["intermediate_values"]) for t in trials)
    speeds = [t["user_attrs"]["metrics"]["images_per_second"] for t in trials if "metrics" in t["user_attrs"]]
    return {
        "width": width,
        "max_epochs": epochs,
        "minutes": minutes,
        "wall_seconds": time.monotonic() - started,
        "counts": study["counts"],
        "epochs_run": epochs_run,
        "images_per_second": sorted(speeds)[len(speeds) // 2] if speeds else None,
        "best": best,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CPU: width 0.25, 15 epochs, 20 minutes")
    parser.add_argument("--minutes", type=float, default=None, help="the wall-clock budget of the search")
    parser.add_argument("--max-trials", type=int, default=30, help="the study's trial budget (time usually ends it)")
    args = parser.parse_args()
    if not (SHARED / "cifar10-full" / "train").is_dir():
        print(f"result_quality needs {SHARED / 'cifar10-full'} (see its README)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hpo-quality.") as tmp:
        results = run(args, Path(tmp))
    name = "result_quality" + ("_quick" if args.quick else "")
    (RESULTS / f"{name}_config.json").write_text(json.dumps(results["best"]["config"], indent=2) + "\n")
    path = save(name, results)
    best = results["best"]
    metrics = best["metrics"]
    print(
        f"counts {results['counts']}; {results['epochs_run']} epochs in {results['wall_seconds']:.0f} s; "
        f"median {results['images_per_second'] or 0:.0f} images/s per trial"
    )
    print(f"best trial {best['trial_number']}: params {best['params']}")
    print(f"validation {metrics.get('val_accuracy', float('nan')):.4f}, epochs {metrics.get('epochs')}")
    print(f"results: {path}")
    print(f"result_quality test_accuracy {metrics.get('test_accuracy', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
