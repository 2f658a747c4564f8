"""Transfer learning: does fine-tuning from pretrained weights beat training from scratch on a
small dataset, for the same search budget?

Two studies (three with ``--source cifar``) run through the API, PostgreSQL and a CPU worker
(2 slots); benchmarks/transfer_specs.py defines them:

- ``--source imagenet`` (the default): ``finetune`` starts from EfficientNet-Lite0's ImageNet
  weights (the package the project installs), ``scratch`` is the article's CNN from random
  weights, both on dog, frog, horse, ship and truck, 30 images each;
- ``--source cifar``: ``pretrain`` trains the CNN on the five other classes first, and
  ``finetune`` starts from its best trial (50 images per class).

Both small studies select on validation (20% of their images); the headline compares their
best trials' test accuracy on the test images of the five classes. It ends with
``transfer ratio X`` = fine-tuned best test accuracy / from-scratch best test accuracy.

``--quick`` uses the bundled sample (data/cifar10-sample: 1,000 test images of the five
classes). The full run uses ../shared/datasets/cifar10-full when it is there (2,500 test
images; with ``--source cifar``, 22,500 pretraining images), else the bundled sample.

    python -m benchmarks.transfer [--quick] [--source imagenet|cifar] [--data sample|full]
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
from benchmarks.transfer_specs import pretrain_spec, small_spec
from cli.local_api import free_port

DATASETS = {"sample": (REPO / "data", "cifar10-sample"), "full": (REPO.parent / "shared" / "datasets", "cifar10-full")}


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


def run(quick: bool, source: str, data: str, work: Path) -> dict[str, Any]:
    """Pretrain (``cifar``), then fine-tune and from-scratch side by side; return what each found."""
    pre_epochs, pre_trials, epochs, trials = (20, 2, 15, 10) if quick else (15, 3, 15, 20)
    studies = ["pretrain", "finetune", "scratch"] if source == "cifar" else ["finetune", "scratch"]
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
        if source == "cifar":
            spec = pretrain_spec(path, pre_epochs, pre_trials)
            httpx.post(base + "/studies", json=spec, timeout=30).raise_for_status()
            wait_for(base, "pretrain", 3600)
            pretrained = outcome(base, "pretrain")
            print(
                f"pretrain: best trial {pretrained['best_trial']}, test {pretrained['test_accuracy']:.3f}", flush=True
            )
        for name, transfer in (("finetune", True), ("scratch", False)):
            spec = small_spec(source, path, name, epochs, trials, transfer)
            httpx.post(base + "/studies", json=spec, timeout=30).raise_for_status()
        for name in ("finetune", "scratch"):
            wait_for(base, name, 3600)
        results = {name: outcome(base, name) for name in studies}
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
    budget = {"small": [trials, epochs], **({"pretrain": [pre_trials, pre_epochs]} if source == "cifar" else {})}
    return {
        "quick": quick,
        "source": source,
        "data": path,
        "budget": budget,
        "studies": studies,
        "wall_seconds": time.monotonic() - started,
        **results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 pretrain trials of 20 epochs, 10 small trials of 15")
    parser.add_argument("--source", choices=["imagenet", "cifar"], default="imagenet", help="where finetune starts")
    parser.add_argument("--data", choices=sorted(DATASETS), default=None, help="default: sample if --quick, else full")
    args = parser.parse_args()
    data = args.data or ("sample" if args.quick or not (DATASETS["full"][0] / "cifar10-full").is_dir() else "full")
    with tempfile.TemporaryDirectory(prefix="hpo-transfer.") as tmp:
        results = run(args.quick, args.source, data, Path(tmp))
    prefix = "transfer" if args.source == "cifar" else "transfer_imagenet"
    path = save(prefix + ("_quick" if args.quick else "") + ("" if data == "sample" else f"_{data}"), results)
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
        for name in results["studies"]
    ]
    print(table(rows, list(rows[0])))
    print(f"{results['wall_seconds']:.0f} s; results: {path}")
    ratio = results["finetune"]["test_accuracy"] / results["scratch"]["test_accuracy"]
    print(f"transfer ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
