"""System 2 of benchmarks/peers.py: plain Optuna, as its documentation shows a distributed search.

Two processes run ``study.optimize`` on one study in PostgreSQL, TPE and Hyperband, with Optuna's
own heartbeat and its stale-trial retry callback. The objective is objectives.train, as in the
service's worker, reporting each epoch and pruning when told to. There is no checkpoint resume:
a retried trial starts again from epoch 1.

    python -m benchmarks.peers_plain RACE_JSON DATABASE_URL STUDY INDEX TRAIN_SECONDS_FILE
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks.peers_faults import FAULT_AT, FAULT_WINDOW_S, optuna_fate, running_trial_of
from benchmarks.peers_optuna_watch import StudyWatch
from benchmarks.peers_race import CONCURRENT, SPACE, Events, Race


def sampler(race: Race, index: int) -> optuna.samplers.BaseSampler:
    """TPE with Optuna's defaults, seeded per process (equal seeds would propose the same configs)."""
    return optuna.samplers.TPESampler(seed=1000 * race.seed + index)


def pruner(race: Race) -> optuna.pruners.BasePruner:
    """Hyperband over the race's epochs, as Optuna's documentation sets it up."""
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=race.epochs, reduction_factor=3)


def storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage with Optuna's heartbeat and its retry of trials whose process died."""
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=60,
        grace_period=120,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
    )


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The race's search space, suggested the plain Optuna way."""
    lr, aug = SPACE["lr"], SPACE["aug_strength"]
    return {
        "lr": trial.suggest_float("lr", lr["low"], lr["high"], log=True),
        "batch_size": trial.suggest_categorical("batch_size", SPACE["batch_size"]["choices"]),
        "aug_strength": trial.suggest_float("aug_strength", aug["low"], aug["high"]),
    }


def optimize(race: Race, url: str, study_name: str, index: int, seconds_file: Path) -> None:
    """One of the processes: load the data once, then optimize until killed (or the trial cap)."""
    import torch

    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.train import train

    torch.set_num_threads(1)
    data = load_dataset(race.dataset, data_dir=race.data_root, cache_dir=race.cache_dir)
    study = optuna.load_study(
        study_name=study_name, storage=storage(url), sampler=sampler(race, index), pruner=pruner(race)
    )
    train_seconds = Events(path=seconds_file)

    def objective(trial: optuna.Trial) -> float:
        config = TrainingConfig.model_validate(race.training_config(suggest(trial)))
        if race.fault:  # which process trains it: the --fault run kills one (a write plain Optuna does not do)
            trial.set_user_attr("process", os.getpid())

        def report(epoch: int, val_accuracy: float) -> None:
            trial.report(val_accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        def on_epoch(curve: Any) -> None:
            train_seconds.add(trial=trial.number, epoch=curve[-1].epoch, train_s=curve[-1].seconds)

        result = train(data, config, device="cpu", report=report, on_epoch=on_epoch)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        return result.val_accuracy

    cap = optuna.study.MaxTrialsCallback(race.max_trials, states=None)
    study.optimize(objective, n_trials=race.max_trials, callbacks=[cap])


def run_plain_optuna(race: Race, url: str, work: Path) -> list[dict[str, Any]]:
    """Create the study, start the processes, watch the study for the budget; the events."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    events = Events(started=time.time())
    name = f"peers-plain-{race.seed}"
    optuna.create_study(study_name=name, storage=url, direction="maximize")
    seconds_files = [work / f"plain-{index}.jsonl" for index in range(CONCURRENT)]
    storage = optuna.storages.RDBStorage(url)
    watch = StudyWatch(storage, name, events)
    fault: dict[str, Any] = {}
    with open(work / "plain.log", "ab") as log:

        def start(index: int) -> subprocess.Popen[bytes]:
            command = [sys.executable, "-m", "benchmarks.peers_plain", race.to_json(), url, name, str(index)]
            return subprocess.Popen([*command, str(seconds_files[index])], stdout=log, stderr=subprocess.STDOUT)

        processes = [start(index) for index in range(min(CONCURRENT, race.max_trials))]
        try:
            if race.fault:
                fault_at = events.started + race.budget_s * FAULT_AT
                watch.watch_until(fault_at, _test_accuracy, race.max_trials)
                while (fault := kill_a_process(processes, storage, name)).get("killed_trial") is None and (
                    time.time() < fault_at + FAULT_WINDOW_S
                ):
                    watch.watch_until(time.time() + 0.5, _test_accuracy, race.max_trials)
                fault["killed_at"] = time.time() - events.started
                if (index := fault.pop("index")) is not None:
                    processes.append(start(index))  # started again, as systemd would
            watch.watch_until(events.started + race.budget_s, _test_accuracy, race.max_trials)
        finally:
            for process in processes:
                process.kill()
                process.wait()
    seconds = {(r["trial"], r["epoch"]): r["train_s"] for path in seconds_files for r in Events.read(path)}
    for row in events.rows:
        if "epoch" in row:
            row["train_s"] = seconds.get((row["trial"], row["epoch"]), 0.0)
    if race.fault:
        killed_at = fault.pop("killed_at")
        fate = (
            optuna_fate(storage, name, fault["killed_trial"], killed_at, events.rows) if "killed_trial" in fault else {}
        )
        events.rows.append({"t": killed_at, "fault": {**fault, **fate}})
    return events.rows


def kill_a_process(
    processes: list[subprocess.Popen[bytes]], storage: optuna.storages.BaseStorage, name: str
) -> dict[str, Any]:
    """Kill one process that is training a trial; its index and the trial's number."""
    for index, process in enumerate(processes):
        number = running_trial_of(storage, name, "process", process.pid)
        if number is not None:
            process.kill()
            process.wait()
            return {"index": index, "killed_trial": number}
    return {"index": None}


def _test_accuracy(trial: optuna.trial.FrozenTrial) -> float | None:
    return trial.user_attrs.get("test_accuracy")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize(Race.from_json(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]))
