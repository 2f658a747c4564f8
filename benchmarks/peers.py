"""Side by side with what a user would pick instead: one search, four ways, on this machine.

1. ``service``: this service as a user runs it (``hpo serve``, ``worker --gpus cpu
   --trials-per-gpu 2``, PostgreSQL; TPE + Hyperband): benchmarks/peers_service.py.
2. ``optuna``: plain Optuna, two processes of ``study.optimize`` on PostgreSQL, TPE + Hyperband,
   Optuna's heartbeat and retry callback, objectives.train as the objective: benchmarks/peers_plain.py.
3. ``ray``: Ray Tune, ASHA + OptunaSearch (TPE), objectives.train as a function trainable that
   reports and checkpoints every epoch: benchmarks/peers_ray.py.
4. ``ray-users``: the same Tuner with the trainable of Ray's PyTorch CIFAR-10 example
   (torchvision DataLoader): benchmarks/peers_torch_loop.py.

Each gets the same split, search space (lr, batch size, aug_strength at one width), epochs per
trial, two concurrent trials of one CPU thread, and wall-clock budget, from its own start (its
imports, daemons and API included) to a hard stop. The systems run one after another, their order
rotated across repeats. Per system: best validation accuracy of a finished trial and its test
accuracy, time to a fixed target validation accuracy (any epoch of any trial), epochs trained,
trials finished and pruned, and the CPU seconds of all its processes outside the epochs'
training passes (PostgreSQL's server not included). Headline: the fastest peer's time to target
divided by ours, the median over repeats.

    python -m benchmarks.peers [--quick | --tiny] [--systems service,optuna,ray,ray-users]

--quick and the full run read ``cifar10-full`` from ../shared/datasets (HPO_SHARED_DATASETS
elsewhere): 1,000 (quick) or 2,500 validation images. --tiny (one trial of each, the bundled
sample) is what the tests run. Ray is the extra ``pip install -e '.[peers]'``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from benchmarks.common import REPO, RESULTS, cache_dir, save, shared_datasets, table
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from benchmarks.peers_faults import FAULT_AT, PIDS_ENV, kill_a_ray_trial, ray_fate
from benchmarks.peers_plain import run_plain_optuna
from benchmarks.peers_race import (
    CpuSampler,
    Events,
    Race,
    become_subreaper,
    children_cpu_seconds,
    kill_and_reap_descendants,
    summarize,
    warm_up,
)
from benchmarks.peers_ray import INSTALL_HINT, ray_available
from benchmarks.peers_service import run_service

SYSTEMS = ["service", "optuna", "ray", "ray-users"]
SHARED = shared_datasets()
FULL_SPLIT = {"kind": "imagefolder", "path": "cifar10-full", "val_fraction": 0.2}
SETTINGS: dict[str, dict[str, Any]] = {  # data, width, epochs, budget, target, repeats
    "tiny": {
        "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": 500, "val_fraction": 0.2},
        "root": REPO / "data",
        "width": 0.125,
        "epochs": 2,
        "budget_s": 120.0,
        "target": 0.0,
        "repeats": 1,
        "max_trials": 1,
    },
    "quick": {
        "dataset": {**FULL_SPLIT, "limit": 5000},
        "root": SHARED,
        "width": 0.25,
        "epochs": 6,
        "budget_s": 150.0,
        "target": 0.62,
        "repeats": 1,
    },
    "full": {
        "dataset": {**FULL_SPLIT, "limit": 12500},
        "root": SHARED,
        "width": 0.25,
        "epochs": 10,
        "budget_s": 600.0,
        "target": 0.70,
        "repeats": 3,
    },
}


def run_system(system: str, race: Race, server: str, work: Path) -> dict[str, Any]:
    """Run one system for the race on a fresh database; its figures, CPU seconds included."""
    database = create_database(server)
    url = database_url(server, database)
    folder = Path(tempfile.mkdtemp(prefix=f"peers-{system}-", dir=work))
    reaped_before = children_cpu_seconds()
    try:
        with CpuSampler() as cpu:
            rows = RUNNERS[system](race, url, folder)
    finally:
        kill_and_reap_descendants()
        drop_database(server, database)
    figures = summarize(rows, race)
    fault = next((r["fault"] for r in rows if "fault" in r), None)
    return {
        "system": system,
        **figures,
        **({"fault": fault} if race.fault else {}),
        "cpu_s": cpu.seconds,
        "cpu_outside_train_s": cpu.seconds - figures["train_s"],
        "cpu_reaped_s": children_cpu_seconds() - reaped_before,  # a check: all but Ray's workers
    }


def run_ray(system: str) -> Callable[[Race, str, Path], list[dict[str, Any]]]:
    """A runner that drives Ray Tune in its own process (Ray's daemons become its descendants)."""

    def runner(race: Race, url: str, work: Path) -> list[dict[str, Any]]:
        events, pids, started = work / "events.jsonl", work / "pids.txt", time.time()
        command = [sys.executable, "-m", "benchmarks.peers_ray", system, race.to_json(), str(started), str(events)]
        env = {**os.environ, PIDS_ENV: str(pids)}
        fault: dict[str, Any] | None = None
        with open(work / "driver.log", "ab") as log:
            driver = subprocess.Popen(
                [*command, str(work)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
            if race.fault:
                time.sleep(max(0.0, started + race.budget_s * FAULT_AT - time.time()))
                fault, killed_at = kill_a_ray_trial(pids), time.time() - started  # Ray restarts the trial
            try:
                driver.wait(timeout=race.budget_s + 60)  # Ray stops itself at the budget
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
        if driver.returncode:
            print(
                f"{system}: the Ray driver exited with {driver.returncode}; see {work / 'driver.log'}", file=sys.stderr
            )
        rows = Events.read(events)
        if race.fault:
            fate = ray_fate(rows, fault["killed_trial"], killed_at) if fault else {}
            rows.append({"t": killed_at, "fault": {**(fault or {"killed_trial": None}), **fate}})
        return rows

    return runner


RUNNERS: dict[str, Callable[[Race, str, Path], list[dict[str, Any]]]] = {
    "service": run_service,
    "optuna": run_plain_optuna,
    "ray": run_ray("ray"),
    "ray-users": run_ray("ray-users"),
}


def ratios(rows: list[dict[str, Any]], budget_s: float) -> dict[str, float]:
    """Per peer, its time to target divided by ours in one repeat (a peer that never got there counts
    as the budget, so the ratio is a lower bound; 0 if we never got there)."""
    times = {r["system"]: r["time_to_target_s"] for r in rows}
    ours = times.get("service")
    return {
        name: 0.0 if not ours else (t if t is not None else budget_s) / ours
        for name, t in times.items()
        if name != "service"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="one repeat of 150 s per system on 5,000 cifar10-full images"
    )
    mode.add_argument("--tiny", action="store_true", help="one trial per system on the bundled sample (the tests)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="which systems, comma-separated")
    parser.add_argument("--repeats", type=int, help="repeats (default 1 quick, 3 full)")
    parser.add_argument("--fault", action="store_true", help="kill one training process a third into each budget")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results file (benchmarks/results/)")
    args = parser.parse_args()
    name = "tiny" if args.tiny else "quick" if args.quick else "full"
    setting = SETTINGS[name]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or "service" not in systems:
        parser.error(f"--systems takes service (always) and any of {SYSTEMS}; got {unknown or systems}")
    if any(s.startswith("ray") for s in systems) and not ray_available():
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if not (Path(setting["root"]) / setting["dataset"]["path"] / "train").is_dir():
        print(
            f"peers needs {Path(setting['root']) / setting['dataset']['path']} (HPO_SHARED_DATASETS)", file=sys.stderr
        )
        return 2
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the retry's lineage
    become_subreaper()
    server = postgres_server()
    repeats = args.repeats or setting["repeats"]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hpo-peers.") as work:
        for repeat in range(repeats):
            race = Race(
                dataset=setting["dataset"],
                data_root=str(setting["root"]),
                cache_dir=str(cache_dir()),
                width=setting["width"],
                epochs=setting["epochs"],
                budget_s=setting["budget_s"],
                target=setting["target"],
                seed=repeat,
                max_trials=setting.get("max_trials", 1000),
                fault=args.fault,
            )
            if repeat == 0:
                seconds = warm_up(race, with_ray=any(s.startswith("ray") for s in systems))
                print(f"warm-up (imports and the images read once, before any budget): {seconds:.1f} s", flush=True)
            order = systems[repeat % len(systems) :] + systems[: repeat % len(systems)]
            rows = []
            for system in order:
                row = {"repeat": repeat, **run_system(system, race, server, Path(work))}
                print(table([row], [k for k in row if k not in ("best_params", "fault")]), flush=True)
                if "fault" in row:
                    print(f"{system}: killed mid-trial: {row['fault']}", flush=True)
                rows.append(row)
            results.append({"repeat": repeat, "order": order, "rows": rows, "ratios": ratios(rows, race.budget_s)})
    return report(name + ("_fault" if args.fault else ""), setting, systems, results, args.out)


def report(name: str, setting: dict[str, Any], systems: list[str], results: list[dict[str, Any]], out: Path) -> int:
    """Print the table and the headline, and save the raw rows to benchmarks/results/."""
    rows = [row for result in results for row in result["rows"]]
    print(table(rows, [k for k in rows[0] if k not in ("best_params", "fault")]))
    per_peer = {peer: statistics.median(r["ratios"][peer] for r in results) for peer in systems if peer != "service"}
    payload = {"setting": {**setting, "root": str(setting["root"])}, "systems": systems, "results": results}
    path = save(f"peers_{name}", {**payload, "median_ratio": per_peer}, out)
    print(f"results: {path}")
    for peer, value in per_peer.items():
        print(f"time to target {setting['target']}: {peer} / service = {value:.2f} (median over {len(results)})")
    if per_peer:
        fastest = [min(r["ratios"].items(), key=lambda item: item[1]) for r in results]  # per repeat: (peer, ratio)
        headline = statistics.median(ratio for _, ratio in fastest)
        names = sorted({peer for peer, _ in fastest})
        print(f"peers time_to_target_ratio {headline:.2f} (vs {'/'.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
