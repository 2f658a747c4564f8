"""Coordination overhead: trials/s through the project's worker loop vs a plain Optuna loop.

A zero-cost objective reports 3 intermediate values. The project's side runs the real worker
loop (worker.loop.Child) with everything on: study survey, the study lock and budget check,
heartbeats, user attributes, checkpoint bookkeeping; only training is replaced. The plain
side runs `study.optimize` with no callbacks and no heartbeat. Both use the random sampler on
the same PostgreSQL server in the same run, with 1, 4 and 8 processes, on an empty study and
on one already holding a few thousand trials. Latency: from asking for a trial (the project:
taking the study lock) to the objective starting.

    HPO_DATABASE_URL=postgresql+psycopg2://... python -m benchmarks.coordination [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.common import save, table

DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _zero_train(data: Any, *, report: Any, **_: Any) -> Any:
    from objectives.train import TrainResult

    for epoch in (1, 2, 3):
        report(epoch, 0.1 * epoch)
    return TrainResult(
        val_accuracy=0.3,
        test_accuracy=0.3,
        loss=0.0,
        epochs=3,
        seconds=0.0,
        images_per_second=0.0,
        device="cpu",
        threads=1,
    )


def _no_data(*_: Any, **__: Any) -> None:
    return None


def project_process(url: str, start: Any, results: Any) -> None:
    """One worker child with training replaced by a zero-cost objective."""
    os.environ["HPO_DATABASE_URL"] = url
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import worker.loop as loop
    from worker.objective import TrialObjective

    asked: list[float] = []
    latencies: list[float] = []
    real_lock = loop.lock_if_startable

    def timed_lock(*args: Any, **kwargs: Any) -> Any:
        asked.append(time.perf_counter())
        return real_lock(*args, **kwargs)

    @dataclass
    class ZeroCost(TrialObjective):
        load_fn: Callable[..., Any] = _no_data
        train_fn: Callable[..., Any] = _zero_train

        def __call__(self, trial: optuna.Trial) -> float:
            latencies.append(time.perf_counter() - asked[-1])
            return super().__call__(trial)

    loop.lock_if_startable = timed_lock
    slot = loop.SlotConfig(index=0, device="cpu", cuda_visible="", threads=1, study=None, burst=True, poll_seconds=0.05)
    child = loop.Child(slot, threading.Event(), None, None, "cpu")
    child.objective_class = ZeroCost
    start.wait()
    child.run()
    results.put(latencies)


def plain_process(url: str, name: str, n_trials: int, start: Any, results: Any) -> None:
    """A plain Optuna optimize loop, no callbacks, no heartbeat."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())
    latencies: list[float] = []
    asked = [0.0]

    def objective(trial: optuna.Trial) -> float:
        latencies.append(time.perf_counter() - asked[0])
        x = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        for epoch in (1, 2, 3):
            trial.report(0.1 * epoch, epoch)
        return x

    start.wait()
    for _ in range(n_trials):
        asked[0] = time.perf_counter()
        study.optimize(objective, n_trials=1)
    results.put(latencies)


def fresh_database(server: str) -> str:
    """Create an empty database on the server, migrated; return its URL."""
    from service.migrate import migrate

    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    return url


def prefill(url: str, name: str, count: int) -> None:
    """Add ``count`` finished trials (3 reports each) to a study."""
    if not count:
        return
    from optuna.distributions import BaseDistribution, FloatDistribution

    study = optuna.load_study(study_name=name, storage=url)
    dist: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"lr": 0.001}, distributions=dist, value=0.3, intermediate_values={1: 0.1, 2: 0.2, 3: 0.3}
            )
            for _ in range(count)
        ]
    )


def run_side(side: str, url: str, processes: int, trials: int, existing: int) -> dict[str, Any]:
    """Time one configuration; returns trials/s and latency percentiles."""
    from service.spec import StudySpec
    from service.studies import create_study

    ctx = mp.get_context("spawn")
    name = f"{side}-{processes}-{existing}"
    if side == "project":
        spec = StudySpec.model_validate(
            {
                "name": name,
                "dataset": {"kind": "imagefolder", "path": "cifar10-sample"},
                "epochs": 3,
                "max_trials": existing + trials,
                "sampler": {"name": "random"},
                "pruner": {"name": "none"},
                "search_space": {
                    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                    "batch_size": 128,
                    "aug_strength": 0.5,
                },
            }
        )
        create_study(url=url, spec=spec)
    else:
        optuna.create_study(study_name=name, storage=url, direction="maximize")
    prefill(url, name, existing)
    start, results = ctx.Event(), ctx.Queue()
    share = [trials // processes + (1 if i < trials % processes else 0) for i in range(processes)]
    procs = [
        ctx.Process(target=project_process, args=(url, start, results))
        if side == "project"
        else ctx.Process(target=plain_process, args=(url, name, share[i], start, results))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3.0 + 0.5 * processes)  # let every process import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    latencies = [lat for _ in procs for lat in results.get(timeout=900)]
    elapsed = time.perf_counter() - began
    for proc in procs:
        proc.join()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "side": side,
        "processes": processes,
        "existing": existing,
        "trials": len(latencies),
        "trials_per_s": len(latencies) / elapsed,
        "p50_ms": quantiles[49] * 1000,
        "p95_ms": quantiles[94] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer trials and processes (under 3 minutes)")
    args = parser.parse_args()
    server = os.environ.get("HPO_BENCH_PG_URL") or os.environ.get("HPO_TEST_PG_URL") or DEFAULT_SERVER
    server = make_url(server).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    trials, counts, existing = (200, (1, 4), (0, 1000)) if args.quick else (500, (1, 4, 8), (0, 5000))
    url = fresh_database(server)
    rows = []
    for before in existing:
        for processes in counts:
            for side in ("plain", "project"):
                rows.append(run_side(side, url, processes, trials, before))
                print(table(rows[-1:], list(rows[-1])), flush=True)
    print(table(rows, list(rows[0])))
    by = {(r["side"], r["processes"], r["existing"]): r["trials_per_s"] for r in rows}
    headline = by[("project", 4, 0)] / by[("plain", 4, 0)]
    path = save(
        "coordination" + ("_quick" if args.quick else ""),
        {"rows": rows, "headline_ratio": headline, "quick": args.quick, "database": "postgresql"},
    )
    print(f"results: {path}")
    print(f"coordination ratio {headline:.2f}")


if __name__ == "__main__":
    main()
