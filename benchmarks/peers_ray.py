"""Systems 3 and 4 of benchmarks/peers.py: Ray Tune, ASHA and OptunaSearch (TPE), two trials of one CPU.

- ``ray``: the trainable wraps objectives.train (the service's own trainer): it reports every
  epoch with a checkpoint (the trainer's own file) and resumes from one when Ray restarts it.
- ``ray-users``: the trainable Ray's PyTorch CIFAR-10 example teaches (benchmarks/peers_torch_loop.py).

Ray is a benchmark-only extra (``pip install -e '.[peers]'``), never a dependency of the service.
This module runs as the system's own process, so that Ray's processes are all its descendants:

    python -m benchmarks.peers_ray {ray|ray-users} RACE_JSON STARTED EVENTS_FILE WORK_DIR
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.peers_faults import announce_trial_pid
from benchmarks.peers_race import CONCURRENT, SPACE, Events, Race

INSTALL_HINT = "Ray Tune is missing: pip install -e '.[peers]' (a benchmark-only extra)"


def ray_available() -> bool:
    """Whether ``ray[tune]`` can be imported here."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None


def train_with_objectives(config: dict[str, Any], race_json: str) -> None:
    """Ray's function trainable around objectives.train: an epoch's report carries its checkpoint."""
    import torch
    from ray import tune

    from objectives.config import TrainingConfig
    from objectives.data import load_dataset
    from objectives.train import train

    torch.set_num_threads(1)
    announce_trial_pid(tune.get_context().get_trial_id())
    race = Race.from_json(race_json)
    data = load_dataset(race.dataset, data_dir=race.data_root, cache_dir=race.cache_dir)
    training = TrainingConfig.model_validate(race.training_config(config))
    state = Path(tempfile.mkdtemp(prefix="peers-ray-")) / "state.pt"
    resume = None
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            shutil.copy(Path(folder) / "state.pt", state)
        resume = state
    last: dict[str, float] = {}

    def on_epoch(curve: Any) -> None:
        last["train_s"] = curve[-1].seconds

    def report(epoch: int, val_accuracy: float) -> None:
        last["val_accuracy"] = val_accuracy
        if epoch == race.epochs:
            return  # reported with the test accuracy once train() returns
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(state, Path(folder) / "state.pt")
            metrics = {"val_accuracy": val_accuracy, "train_s": last["train_s"]}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    result = train(
        data, training, device="cpu", report=report, on_epoch=on_epoch, checkpoint_path=state, resume_from=resume
    )
    tune.report(
        {"val_accuracy": result.val_accuracy, "train_s": last["train_s"], "test_accuracy": result.test_accuracy}
    )
    shutil.rmtree(state.parent, ignore_errors=True)


def drive(system: str, race: Race, started: float, events_path: Path, work: Path) -> None:
    """Run the Tuner until the race's budget (Ray's own ``time_budget_s``) or its trial cap."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from benchmarks.peers_torch_loop import train_like_the_ray_example

    events = Events(path=events_path, started=started)

    class RecordEvents(tune.Callback):  # type: ignore[misc, unused-ignore]  # Any where Ray is not installed
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            events.add(
                trial=trial.trial_id,
                epoch=result["training_iteration"],
                val=result["val_accuracy"],
                train_s=result["train_s"],
            )

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            final = trial.last_result or {}
            state = "complete" if final.get("training_iteration") == race.epochs else "pruned"
            params = {k: trial.config[k] for k in SPACE}
            events.add(
                trial=trial.trial_id,
                state=state,
                val=final.get("val_accuracy"),
                test=final.get("test_accuracy"),
                params=params,
            )

    ray.init(num_cpus=CONCURRENT, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    function = train_with_objectives if system == "ray" else train_like_the_ray_example
    space = {
        "lr": tune.loguniform(SPACE["lr"]["low"], SPACE["lr"]["high"]),
        "batch_size": tune.choice(SPACE["batch_size"]["choices"]),
        "aug_strength": tune.uniform(SPACE["aug_strength"]["low"], SPACE["aug_strength"]["high"]),
    }
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(function, race_json=race.to_json()), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            search_alg=OptunaSearch(seed=race.seed),  # TPE, Optuna's default sampler
            scheduler=ASHAScheduler(max_t=race.epochs, grace_period=1, reduction_factor=3),
            num_samples=race.max_trials,
            max_concurrent_trials=CONCURRENT,
            time_budget_s=max(1.0, race.budget_s - (time.time() - started)),  # from the system's start
        ),
        run_config=tune.RunConfig(
            storage_path=str(work / "ray-results"),
            name=system,
            verbose=0,
            callbacks=[RecordEvents()],
            failure_config=tune.FailureConfig(max_failures=3),
        ),
    )
    tuner.fit()
    ray.shutdown()


if __name__ == "__main__":
    drive(sys.argv[1], Race.from_json(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
