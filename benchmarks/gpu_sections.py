"""The sections of the GPU check (benchmarks/gpu_check.py): each takes a Check and returns what it
measured as a JSON-ready dict. Each creates its studies on its own SQLite file and runs the real
``worker`` command on them, or calls the training loop directly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import data_dir

if TYPE_CHECKING:
    from benchmarks.gpu_check import Sizes

GOOD_CONFIG = {  # SGD with Nesterov and a one-cycle schedule: the classic recipe for small CIFAR CNNs
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "batch_size": 256,
    "aug_strength": 0.6,
    "label_smoothing": 0.1,
}


@dataclass
class Check:
    """Where a run keeps its files, and what it has measured so far."""

    sizes: Sizes
    work: Path  # scratch: databases, artifacts, worker logs
    results: dict[str, Any]

    def budget(self, section: str) -> float:
        """The seconds ``section`` may take (gpu_check.BUDGET_SECONDS; a dry run's are longer)."""
        from benchmarks.gpu_check import BUDGET_SECONDS

        return BUDGET_SECONDS[section] * (1 if self.sizes.gpus != "cpu" else 3)

    def device(self) -> Any:
        """The torch device the training sections use."""
        import torch

        return torch.device("cuda" if self.sizes.gpus != "cpu" else "cpu")

    def study(
        self,
        name: str,
        *,
        trials: int,
        epochs: int,
        width: float,
        batch: list[int],
        dataset: str = "cifar10-sample",
        limit: int | None = None,
    ) -> str:
        """Create a study on its own SQLite file; returns that database's URL."""
        import warnings

        from optuna.exceptions import ExperimentalWarning

        from service.db.database import Database
        from service.db.migrate import migrate
        from service.settings import Settings
        from service.spec.schema import StudySpec
        from service.studies.lifecycle import create_study

        warnings.filterwarnings("ignore", category=ExperimentalWarning)  # Optuna's heartbeat API
        url = f"sqlite:///{self.work / name}.db"
        spec = StudySpec.model_validate(
            {
                "name": name,
                "dataset": {"kind": "imagefolder", "path": dataset, "limit": limit or self.sizes.smoke_limit},
                "search_space": {
                    "lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
                    "batch_size": {"type": "categorical", "choices": batch},
                    "width": width,
                },
                "epochs": epochs,
                "max_trials": trials,
                "pruner": {"name": "none"},
                "sampler": {"name": "random", "seed": 0},
            }
        )
        database = Database.from_settings(Settings(database_url=url))
        migrate(database)
        with database.sessions() as session:
            create_study(session=session, storage=database.storage, spec=spec)
        database.dispose()
        return url

    def run_worker(self, url: str, name: str, trials_per_gpu: int, timeout: float) -> float:
        """Run ``worker --burst`` on one study until it is done; returns its wall seconds.

        The worker runs in a process group of its own: past ``timeout`` the whole group is killed
        (its slot children would otherwise go on using the GPU during later sections) and
        TimeoutError says so.
        """
        command = [sys.executable, "-m", "worker.cli", "--gpus", self.sizes.gpus, "--trials-per-gpu"]
        command += [str(trials_per_gpu), "--study", name, "--burst", "--plain", "--poll", "0.5"]
        env = {**os.environ, "HPO_DATABASE_URL": url, "HPO_ARTIFACT_DIR": str(self.work / f"{name}-artifacts")}
        started = time.perf_counter()
        with open(self.work / "workers.log", "a") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                worker.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                raise TimeoutError(f"worker on {name} ran past {timeout:.0f} s; its process group was killed") from None
        return time.perf_counter() - started


def trial_rows(url: str, name: str) -> list[dict[str, Any]]:
    """State, parameters and measured metrics of every trial of a study."""
    import optuna

    rows = []
    for trial in optuna.load_study(study_name=name, storage=url).trials:
        metrics = trial.user_attrs.get("metrics", {})
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "batch_size": trial.params.get("batch_size"),
                "images_per_second": metrics.get("images_per_second"),
                "val_accuracy": metrics.get("val_accuracy"),
                "test_accuracy": metrics.get("test_accuracy"),
                "device": metrics.get("device"),
                "error": trial.user_attrs.get("error"),
            }
        )
    return rows


def smoke(check: Check) -> dict[str, Any]:
    """Two trials side by side on one GPU, through the real worker; RuntimeError unless every
    trial completed (a run that completes none must not pass)."""
    sizes = check.sizes
    url = check.study(
        "smoke", trials=sizes.smoke_trials, epochs=sizes.smoke_epochs, width=sizes.smoke_width, batch=[256, 512]
    )
    seconds = check.run_worker(url, "smoke", trials_per_gpu=2, timeout=check.budget("smoke"))
    rows = trial_rows(url, "smoke")
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if len(complete) < sizes.smoke_trials:
        errors = sorted({str(r["error"]) for r in rows if r["error"]})
        raise RuntimeError(f"{len(complete)} of {sizes.smoke_trials} smoke trials completed; errors: {errors}")
    return {"seconds": seconds, "trials": rows, "complete": len(complete), "ok": True}


def throughput(check: Check) -> dict[str, Any]:
    """Images/s of objectives.train against the seed loop (benchmarks/train_throughput.py's two sides)."""

    from benchmarks.train_throughput import objectives_loop, seed_loop
    from objectives.data import load_dataset

    sizes = check.sizes
    device = check.device()
    spec = {"kind": "imagefolder", "path": sizes.train_dataset, "limit": sizes.throughput_limit, "val_fraction": 0.1}
    data = load_dataset(spec, data_dir=data_dir(), device=device)
    rows = []
    for width in sizes.throughput_widths:
        objectives_loop(data, width, 1, device)  # warm-up at this width: allocator, cuDNN's kernel choice
        ours = objectives_loop(data, width, sizes.throughput_epochs, device)
        seeds = {w: seed_loop(data, width, sizes.throughput_epochs, w, device) for w in sizes.seed_workers}
        rows.append(
            {"width": width, "objectives_img_s": ours, "seed_img_s": seeds, "ratio": ours / max(seeds.values())}
        )
    return {"rows": rows, "images": len(data.train), "epochs": sizes.throughput_epochs}


def packing(check: Check) -> dict[str, Any]:
    """Trials per hour of the same short study with 1, 2, 4 trials side by side on the GPU."""
    sizes = check.sizes
    rows = []
    for slots in sizes.packing_slots:
        name = f"packing-{slots}"
        url = check.study(
            name,
            trials=sizes.packing_trials,
            epochs=sizes.packing_epochs,
            width=sizes.packing_width,
            batch=[256],
            dataset=sizes.train_dataset,
            limit=sizes.packing_limit,
        )
        seconds = check.run_worker(url, name, trials_per_gpu=slots, timeout=check.budget("packing") / 3)
        complete = sum(r["state"] == "COMPLETE" for r in trial_rows(url, name))
        rows.append(
            {"trials_per_gpu": slots, "seconds": seconds, "complete": complete, "per_hour": complete * 3600 / seconds}
        )
    base = rows[0]["per_hour"] or float("nan")
    return {"rows": rows, "gain_at_most_slots": rows[-1]["per_hour"] / base}


def result_quality(check: Check) -> dict[str, Any]:
    """One good config trained on the full training set; validation and held-out test accuracy."""

    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.train import train

    sizes = check.sizes
    device = check.device()
    spec = {"kind": "imagefolder", "path": sizes.quality_dataset, "limit": sizes.quality_limit, "val_fraction": 0.1}
    tick = time.perf_counter()
    data = load_dataset(spec, data_dir=data_dir(), device=device)
    load_seconds = time.perf_counter() - tick
    params = {**GOOD_CONFIG, "width": sizes.quality_width}
    config = TrainingConfig.model_validate({"dataset": spec, "params": params, "epochs": sizes.quality_epochs})
    result = train(data, config, device=device)
    return {"dataset": spec, "load_seconds": load_seconds, "params": params, **result.as_dict()}


class _Killed(Exception):
    """Stands for the worker killed after an epoch."""


def resume(check: Check) -> dict[str, Any]:
    """A run killed after epoch 2 resumes from its checkpoint (model, fused optimizer, schedule and
    the device's random generator) and ends as the uninterrupted run does: bit for bit on CPU,
    close on a GPU (cuDNN's nondeterminism). RuntimeError if it does not resume on this device."""
    from objectives.checkpoint import find_resumable
    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.train import train

    sizes, device = check.sizes, check.device()
    spec = {"kind": "imagefolder", "path": sizes.train_dataset, "limit": sizes.resume_limit, "val_fraction": 0.1}
    data = load_dataset(spec, data_dir=data_dir(), device=device)
    params = {**GOOD_CONFIG, "width": 0.25}
    config = TrainingConfig.model_validate({"dataset": spec, "params": params, "epochs": sizes.resume_epochs})
    full = train(data, config, device=device)
    checkpoint = check.work / "resume.pt"

    def killed_after_two(epoch: int, _accuracy: float) -> None:
        if epoch == 2:
            raise _Killed

    with contextlib.suppress(_Killed):
        train(data, config, device=device, checkpoint_path=checkpoint, report=killed_after_two)
    saved = find_resumable(checkpoint)
    resumed = train(data, config, device=device, resume_from=checkpoint)
    if saved.epoch != 2 or saved.generator_device != device.type or resumed.epochs != sizes.resume_epochs:
        raise RuntimeError(f"resume on {device.type}: checkpoint {saved}, resumed to epoch {resumed.epochs}")
    return {
        "epochs": sizes.resume_epochs,
        "generator_device": saved.generator_device,
        "full_val_accuracy": full.val_accuracy,
        "resumed_val_accuracy": resumed.val_accuracy,
        "difference": resumed.val_accuracy - full.val_accuracy,
        "bit_identical": (resumed.val_accuracy, resumed.loss) == (full.val_accuracy, full.loss),
    }
