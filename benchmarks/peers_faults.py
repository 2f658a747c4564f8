"""The fault of ``benchmarks.peers --fault``: one training process killed mid-trial, and what became of its trial.

A third of the way into the budget (or the first moment after it when a process has reported
an epoch of its trial: both may be in a new trial's first epoch then), one process training a
trial gets SIGKILL: a slot of the service's worker (its supervisor starts a new one), one of plain
Optuna's two processes (started again, as systemd would), one of Ray's trial actors (Ray restarts
the trial itself). Afterwards the killed trial's fate is read from the system's own records:
resumed after the epoch it had checkpointed, run again from epoch 1, or not run again within the
budget.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from benchmarks.peers_race import descendants, kill, proc_stats
from service.optuna.tables import WORKER_ATTR

FAULT_AT = 1 / 3  # of the budget
FAULT_WINDOW_S = 60.0  # from FAULT_AT on, how long to wait for a process with an epoch of its trial reported
PIDS_ENV = "PEERS_TRIAL_PIDS"  # the file where Ray's trainables write "trial_id pid" lines


def descendants_running(marker: str) -> list[int]:
    """This process's descendants whose command line contains ``marker``."""
    found = []
    for pid in descendants(proc_stats()):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(pid)
        except OSError:
            continue
    return found


def running_trial_of(storage: optuna.storages.BaseStorage, study: str, attr: str, value: Any) -> int | None:
    """The number of the study's running trial, with an epoch reported, whose user attribute ``attr`` is ``value``."""
    study_id = storage.get_study_id_from_name(study)
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(attr) == value and trial.intermediate_values:
            return trial.number
    return None


def kill_a_service_slot(storage: optuna.storages.BaseStorage, study: str) -> dict[str, Any] | None:
    """Kill one worker slot that is training a trial; which trial it was."""
    for pid in descendants_running("multiprocessing.spawn"):
        number = running_trial_of(storage, study, WORKER_ATTR, f"{socket.gethostname()}:{pid}")
        if number is not None:
            kill(pid)
            return {"killed_trial": number}
    return None


def optuna_fate(
    storage: optuna.storages.BaseStorage, study: str, killed: int, killed_at: float, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """What became of trial ``killed`` of an Optuna study: its retry's resume epoch, and when it trained again."""
    study_id = storage.get_study_id_from_name(study)
    retries = [
        t
        for t in storage.get_all_trials(study_id, deepcopy=False)
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed
    ]
    before = max((r["epoch"] for r in rows if r.get("trial") == killed and "epoch" in r), default=0)
    if not retries:
        return {"killed_after_epoch": before, "fate": "not run again within the budget"}
    retry = retries[0]
    resumed = int(retry.user_attrs.get("resumed_from_epoch", 0))
    trained = [r["t"] for r in rows if r.get("trial") == retry.number and "epoch" in r and r["epoch"] > resumed]
    return {
        "killed_after_epoch": before,
        "fate": f"resumed after epoch {resumed}" if resumed else "run again from epoch 1",
        "trained_again_after_s": (min(trained) - killed_at) if trained else None,
    }


def kill_a_ray_trial(pids_file: Path) -> dict[str, Any] | None:
    """Kill the process of one running Ray trial (its trainable wrote its pid); which trial it was."""
    if not pids_file.exists():
        return None
    announced = dict(line.split()[::-1] for line in pids_file.read_text().splitlines() if line.strip())
    for pid in descendants_running("ImplicitFunc"):
        if str(pid) in announced:
            kill(pid)
            return {"killed_trial": announced[str(pid)]}
    return None


def ray_fate(rows: list[dict[str, Any]], killed: str, killed_at: float) -> dict[str, Any]:
    """What became of Ray trial ``killed``: the epoch it went on from after the kill, and when."""
    epochs = [r for r in rows if r.get("trial") == killed and "epoch" in r]
    before = max((r["epoch"] for r in epochs if r["t"] <= killed_at), default=0)
    after = sorted((r for r in epochs if r["t"] > killed_at), key=lambda r: r["t"])
    if not after:
        return {"killed_after_epoch": before, "fate": "not run again within the budget"}
    first = after[0]["epoch"]
    fate = f"resumed after epoch {first - 1}" if first > 1 else "run again from epoch 1"
    return {"killed_after_epoch": before, "fate": fate, "trained_again_after_s": after[0]["t"] - killed_at}


def announce_trial_pid(trial_id: str) -> None:
    """In a Ray trainable: write this process's pid for its trial, when the benchmark asked for it."""
    path = os.environ.get(PIDS_ENV)
    if path:
        with open(path, "a") as out:
            out.write(f"{trial_id} {os.getpid()}\n")
