"""Cross-validation: on a small training set, does selecting on 5-fold cross-validation find a
better config than selecting on a 10% holdout, for the same training budget?

Two studies run through the API, PostgreSQL and a CPU worker (2 slots), on 500 images of the
bundled sample (``limit`` 500, width 0.25, the default search space, TPE, no pruning so that
the budget is exact):

- ``holdout``: each trial trains one model on 450 images and validates on 50;
- ``kfold``: each trial trains 5 models on 400 images each and validates each on the other 100.

The budget is the same in image-epochs: a 5-fold trial trains 2,000 images per epoch against a
holdout trial's 450, so the holdout study gets 2,000 / 450 times as many trials. Each study's
winner (best validation accuracy) is then refit on all 500 training images with 3 training
seeds, and its test accuracy (the sample's 1,000 test images) averaged. Also reported: over all
completed trials of each study, the rank correlation between validation and test accuracy.
It ends with ``crossval ratio X`` = the 5-fold winner's mean refit test accuracy / the holdout
winner's.

    python -m benchmarks.crossval [--quick]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.chaos_cluster import api_service, service_env, wait_until_up, worker_service
from benchmarks.common import data_dir, save, table
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from cli.local_api import free_port

IMAGES = 500
FOLDS = 5
SEEDS = (0, 1, 2)  # training seeds of each winner's refit


def study_spec(name: str, validation: dict[str, Any], epochs: int, trials: int) -> dict[str, Any]:
    """The default search over the CNN at width 0.25 on 500 sample images, validated as ``validation``."""
    return {
        "name": name,
        "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": IMAGES, "validation": validation},
        "search_space": {"width": 0.25},
        "epochs": epochs,
        "max_trials": trials,
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 4},
        "pruner": {"name": "none"},
    }


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return float("nan")
    return statistics.correlation(ranks(xs), ranks(ys))


def run_studies(epochs: int, kfold_trials: int, work: Path) -> dict[str, Any]:
    """Run both studies to completion; return each one's best answer and completed trials."""
    holdout_trials = round(kfold_trials * FOLDS * (IMAGES * (FOLDS - 1) / FOLDS) / (IMAGES * 0.9))
    specs = [
        study_spec("holdout", {"kind": "holdout", "fraction": 0.1}, epochs, holdout_trials),
        study_spec("kfold", {"kind": "kfold", "folds": FOLDS}, epochs, kfold_trials),
    ]
    server = postgres_server()
    database = create_database(server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(database_url(server, database), data_dir(), work, port)
    api, worker = api_service(port, env, work), worker_service(0, env, work, slots=2)
    try:
        api.start()
        wait_until_up(base + "/healthz", 60)
        for spec in specs:
            httpx.post(base + "/studies", json=spec, timeout=30).raise_for_status()
        worker.start()
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            statuses = [httpx.get(f"{base}/studies/{s['name']}", timeout=30).json()["status"] for s in specs]
            if all(status == "completed" for status in statuses):
                break
            time.sleep(2)
        out = {}
        for spec in specs:
            name = spec["name"]
            best = httpx.get(f"{base}/studies/{name}/best", timeout=30).json()
            page = httpx.get(f"{base}/studies/{name}/trials", params={"limit": 1000}, timeout=30).json()
            done = [t for t in page["trials"] if t["state"] == "complete"]
            out[name] = {"trials": spec["max_trials"], "best": best, "completed": done}
        return out
    finally:
        for service in (worker, api):
            service.signal_group(signal.SIGKILL)
        drop_database(server, database)


def refit_test_accuracy(config: dict[str, Any]) -> list[float]:
    """The config refit on all its training images with each of SEEDS; their test accuracies."""
    import torch

    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.train import train

    torch.set_num_threads(2)
    refit = TrainingConfig.model_validate(config).refit()
    data = load_dataset(refit.dataset.model_dump(), data_dir=data_dir(), device="cpu")
    return [train(data, refit.model_copy(update={"seed": seed}), device="cpu").test_accuracy for seed in SEEDS]


def summarise(name: str, study: dict[str, Any]) -> dict[str, Any]:
    """The winner, its refit test accuracies, and the validation-test rank correlation of the study."""
    best = study["best"]
    done = study["completed"]
    values = [t["value"] for t in done]
    tests = [t["user_attrs"]["metrics"]["test_accuracy"] for t in done]
    refits = refit_test_accuracy(best["config"])
    return {
        "study": name,
        "trials": study["trials"],
        "winner": best["trial_number"],
        "params": best["params"],
        "val": best["value"],
        "val_std": best["metrics"].get("val_accuracy_std"),
        "trial_test": best["metrics"]["test_accuracy"],
        "refit_tests": refits,
        "refit_test": statistics.fmean(refits),
        "rank_corr": spearman(values, tests),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 five-fold trials of 10 epochs (and 18 holdout trials)")
    args = parser.parse_args()
    epochs, kfold_trials = (10, 4) if args.quick else (15, 8)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hpo-crossval.") as tmp:
        studies = run_studies(epochs, kfold_trials, Path(tmp))
    rows = [summarise(name, studies[name]) for name in ("holdout", "kfold")]
    path = save("crossval" + ("_quick" if args.quick else ""), {"epochs": epochs, "rows": rows})
    print(table(rows, ["study", "trials", "winner", "val", "val_std", "trial_test", "refit_test", "rank_corr"]))
    for row in rows:
        print(f"{row['study']}: winner params {row['params']}; refit test {row['refit_tests']}")
    print(f"{time.monotonic() - started:.0f} s; results: {path}")
    print(f"crossval ratio {rows[1]['refit_test'] / rows[0]['refit_test']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
