"""Transfer learning: does fine-tuning from an earlier study's best model beat training from
scratch on a small dataset, for the same search budget?

Three studies run through the API, PostgreSQL and a CPU worker (2 slots):

1. ``pretrain``: the CNN on airplane, automobile, bird, cat and deer, all their training images;
2. ``finetune``: ``init`` from pretrain's best trial, on dog, frog, horse, ship and truck with
   ``per_class`` 50 (250 images), ``freeze`` and ``backbone_lr_scale`` searched;
3. ``scratch``: the same 250 images, search space (less the two transfer parameters), trials,
   epochs, sampler and pruner, from random weights.

Both small studies select on validation (20% of the 250 images); the headline compares their
best trials' test accuracy on the test images of the five classes. It ends with
``transfer ratio X`` = fine-tuned best test accuracy / from-scratch best test accuracy.

``--quick`` uses the bundled sample (data/cifar10-sample: 1,500 pretraining images, 500 test
images), as examples/transfer does. The full run uses ../shared/datasets/cifar10-full when it
is there (22,500 pretraining images, 2,500 test images), else the bundled sample.

    python -m benchmarks.transfer [--quick] [--data sample|full]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.chaos_cluster import api_service, service_env, wait_until_up, worker_service
from benchmarks.common import REPO, save, table
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from cli.local_api import free_port

PRETRAIN_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET_CLASSES = ["dog", "frog", "horse", "ship", "truck"]
SEARCHED = {  # the small studies' common space; width is fixed so that the pretrained weights fit
    "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
    "width": 0.25,
}
TRANSFER = {
    "freeze": {"type": "categorical", "choices": [0, 2, 3, 4]},
    "backbone_lr_scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
}


DATASETS = {"sample": (REPO / "data", "cifar10-sample"), "full": (REPO.parent / "shared" / "datasets", "cifar10-full")}


def pretrain_spec(path: str, epochs: int, trials: int) -> dict[str, Any]:
    """The source task: five classes, every training image of the dataset."""
    return {
        "name": "pretrain",
        "dataset": {"kind": "imagefolder", "path": path, "classes": PRETRAIN_CLASSES},
        "search_space": {"width": 0.25},
        "epochs": epochs,
        "max_trials": trials,
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
        "pruner": {"name": "none"},
        "enqueue": [{"lr": 0.004, "batch_size": 128, "aug_strength": 0.5}],
    }


def small_spec(path: str, name: str, epochs: int, trials: int, transfer: bool) -> dict[str, Any]:
    """The target task, fine-tuned (``transfer``) or from scratch; otherwise identical."""
    spec: dict[str, Any] = {
        "name": name,
        "dataset": {
            "kind": "imagefolder",
            "path": path,
            "classes": TARGET_CLASSES,
            "per_class": 50,
            "val_fraction": 0.2,
        },
        "search_space": {**SEARCHED, **(TRANSFER if transfer else {})},
        "epochs": epochs,
        "max_trials": trials,
        "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 4},
        "pruner": {"name": "hyperband", "min_resource": 2, "reduction_factor": 3},
    }
    if transfer:
        spec["init"] = {"kind": "study", "study": "pretrain"}
    return spec


def wait_for(base: str, name: str, timeout: float) -> dict[str, Any]:
    """Poll the study until it completes; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = httpx.get(f"{base}/studies/{name}", timeout=30).json()
        if study["status"] == "completed":
            return study
        time.sleep(2)
    raise RuntimeError(f"study {name} did not complete within {timeout:.0f} s")


def epochs_to_reach(trials: list[dict[str, Any]], target: float) -> int | None:
    """Epochs spent, trial by trial in number order, until a validation accuracy first reached ``target``."""
    spent = 0
    for trial in sorted(trials, key=lambda t: t["number"]):
        curve = sorted((int(step), value) for step, value in trial["intermediate_values"].items())
        for epoch, value in curve:
            if value >= target:
                return spent + epoch
        spent += len(curve)
    return None


def outcome(base: str, name: str) -> dict[str, Any]:
    """The study's best trial (by validation), its test accuracy, all its trials and total epochs."""
    best = httpx.get(f"{base}/studies/{name}/best", timeout=30).json()
    trials = httpx.get(f"{base}/studies/{name}/trials", params={"limit": 1000}, timeout=30).json()["trials"]
    return {
        "best_trial": best["trial_number"],
        "params": best["params"],
        "val_accuracy": best["value"],
        "test_accuracy": best["metrics"]["test_accuracy"],
        "epochs_run": sum(len(t["intermediate_values"]) for t in trials),
        "trials": trials,
    }


def run(quick: bool, data: str, work: Path) -> dict[str, Any]:
    """Pretrain, then fine-tune and from-scratch side by side; return what each found."""
    pre_epochs, pre_trials, epochs, trials = (20, 2, 15, 10) if quick else (15, 3, 15, 20)
    data_root, path = DATASETS[data]
    server = postgres_server()
    database = create_database(server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(database_url(server, database), data_root, work, port)
    api, worker = api_service(port, env, work), worker_service(0, env, work, slots=2)
    started = time.monotonic()
    try:
        api.start()
        wait_until_up(base + "/healthz", 60)
        worker.start()
        httpx.post(base + "/studies", json=pretrain_spec(path, pre_epochs, pre_trials), timeout=30).raise_for_status()
        wait_for(base, "pretrain", 3600)
        pretrained = outcome(base, "pretrain")
        print(f"pretrain: best trial {pretrained['best_trial']}, test {pretrained['test_accuracy']:.3f}", flush=True)
        for name, transfer in (("finetune", True), ("scratch", False)):
            spec = small_spec(path, name, epochs, trials, transfer)
            httpx.post(base + "/studies", json=spec, timeout=30).raise_for_status()
        for name in ("finetune", "scratch"):
            wait_for(base, name, 3600)
        results = {name: outcome(base, name) for name in ("pretrain", "finetune", "scratch")}
    finally:
        for service in (worker, api):
            service.signal_group(signal.SIGKILL)
        drop_database(server, database)
    target = results["scratch"]["val_accuracy"]
    for name in ("finetune", "scratch"):
        results[name]["epochs_to_scratch_best"] = epochs_to_reach(results[name]["trials"], target)
    for result in results.values():  # each trial's params, state and value, not its whole record
        result["trials"] = [
            {"number": t["number"], "state": t["state"], "value": t["value"], "params": t["params"]}
            for t in result["trials"]
        ]
    return {
        "quick": quick,
        "data": path,
        "budget": {"pretrain": [pre_trials, pre_epochs], "small": [trials, epochs]},
        "wall_seconds": time.monotonic() - started,
        **results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 pretrain trials of 20 epochs, 10 small trials of 15")
    parser.add_argument("--data", choices=sorted(DATASETS), default=None, help="default: sample if --quick, else full")
    args = parser.parse_args()
    data = args.data or ("sample" if args.quick or not (DATASETS["full"][0] / "cifar10-full").is_dir() else "full")
    with tempfile.TemporaryDirectory(prefix="hpo-transfer.") as tmp:
        results = run(args.quick, data, Path(tmp))
    path = save("transfer" + ("_quick" if args.quick else "") + ("" if data == "sample" else f"_{data}"), results)
    rows = [
        {
            "study": name,
            "best trial": results[name]["best_trial"],
            "val": results[name]["val_accuracy"],
            "test": results[name]["test_accuracy"],
            "epochs run": results[name]["epochs_run"],
            "epochs to scratch best": results[name].get("epochs_to_scratch_best"),
            "params": results[name]["params"],
        }
        for name in ("pretrain", "finetune", "scratch")
    ]
    print(table(rows, list(rows[0])))
    print(f"{results['wall_seconds']:.0f} s; results: {path}")
    ratio = results["finetune"]["test_accuracy"] / results["scratch"]["test_accuracy"]
    print(f"transfer ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
