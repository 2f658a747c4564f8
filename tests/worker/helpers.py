"""Starting real worker processes (or one slot's loop in this process) against a test database,
and watching the study."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from service.db.database import Database
from service.settings import get_settings
from service.spec.schema import StudySpec
from service.studies.lifecycle import change_status, create_study
from service.studies.read import StudySummary, get_study
from tests.conftest import DATA_ROOT, make_spec
from worker.objective import TrialObjective
from worker.slot_loop import SlotLoop
from worker.slots import SlotConfig, TrialQuota

HEARTBEAT = {"HPO_HEARTBEAT_INTERVAL": "1", "HPO_HEARTBEAT_GRACE": "4"}
STARTED: list[subprocess.Popen] = []  # every worker a test started; tests/worker/conftest.py reaps them


def quick_spec(name: str = "s", **overrides) -> StudySpec:
    """A study whose trials take about a second per epoch on this CPU."""
    base = make_spec(name, dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 300, "val_fraction": 0.2})
    base["search_space"]["width"] = 0.0625
    return StudySpec.model_validate({**base, **overrides})


def new_study(db: Database, **overrides) -> StudySpec:
    """Create a quick study through the data layer and return its spec."""
    spec = quick_spec(**overrides)
    with db.sessions() as session:
        create_study(session=session, storage=db.storage, spec=spec)
    return spec


def set_status(db: Database, name: str, action: str) -> None:
    """Pause, resume or stop a study through the data layer."""
    with db.sessions() as session:
        change_status(session=session, name=name, action=action)


WORKER = ("-m", "worker.cli")  # the `worker` command
HPO_WORKER = ("-m", "cli.main", "worker")  # `hpo worker`, the same


def start_worker(
    db: Database,
    artifacts: Path,
    *args: str,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    command: tuple[str, ...] = WORKER,
) -> subprocess.Popen:
    """`worker --gpus cpu ...` in its own process group, with a fast heartbeat (``env`` overrides)."""
    env = {
        **os.environ,
        "HPO_DATABASE_URL": db.url,
        "HPO_DATA_DIR": str(DATA_ROOT),
        "HPO_ARTIFACT_DIR": str(artifacts),
        **HEARTBEAT,
        **(env or {}),
    }
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, *command, "--gpus", "cpu", "--poll", "0.5", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 240) -> int:
    """Wait for a worker to exit by itself; returns its exit code."""
    return proc.wait(timeout=timeout)


def trials(db: Database, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, fresh from the database."""
    return optuna.load_study(study_name=name, storage=db.storage).get_trials(deepcopy=False)


def running_trial_past_epoch(db: Database, name: str, epoch: int) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial that has reported at least ``epoch`` epochs, if any."""
    for trial in trials(db, name):
        if trial.state == optuna.trial.TrialState.RUNNING and len(trial.intermediate_values) >= epoch:
            return trial
    return None


def study_view(db: Database, name: str) -> StudySummary:
    """The study and its progress, fresh from the database (as the API shows it)."""
    with db.sessions() as session:
        return get_study(session=session, name=name)


def assert_exact_budget(db: Database, name: str, max_trials: int) -> None:
    """The study ended with exactly max_trials finished and nothing running or waiting."""
    view = study_view(db, name)
    assert view.progress.finished == max_trials, view.progress
    assert view.progress.counts["running"] == 0 and view.progress.counts["waiting"] == 0, view.progress
    assert view.status == "completed"


def slot_loop(db: Database, objective: type[TrialObjective] = TrialObjective) -> SlotLoop:
    """One worker slot's loop, to run in this process as a worker child runs it (until no work is left)."""
    slot = SlotConfig(index=0, device="cpu", cuda_visible="", threads=1, study=None, burst=True, poll_seconds=0.05)
    loop = SlotLoop(slot, db, get_settings(), threading.Event(), TrialQuota(None, None), "cpu")
    loop.objective_class = objective
    return loop


def run_slot(db: Database, objective: type[TrialObjective] = TrialObjective) -> None:
    """Run ``slot_loop(db, objective)`` until no work is left."""
    slot_loop(db, objective).run()


class Killed(Exception):
    """Stands in for a worker's death: the slot loop treats it as the trial's failure."""


def dies_after_saving(epoch: int) -> Callable[..., Any]:
    """Real training that dies at the one moment a kill -9 can be unlucky: after ``epoch``'s
    checkpoint was saved and before that epoch was reported to Optuna."""

    def train_fn(data: Any, config: Any, **kwargs: Any) -> Any:
        from objectives.train import train

        def on_epoch(curve: list[Any]) -> None:  # called after the save, before report
            if curve[-1].epoch == epoch:
                raise Killed(f"after the checkpoint of epoch {epoch}")

        return train(data, config, **{**kwargs, "on_epoch": on_epoch})

    return train_fn
