"""Adapting one Optuna trial to objectives.train: suggest, resume, report, prune, hand back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from objectives.curves import EpochMetrics, recorded
from service.artifacts import weights_file
from service.db.database import Database
from service.optuna.resilient import ResilientRDBStorage
from service.optuna.trials import study_id, trial_id
from service.spec.schema import StudySpec
from service.spec.space import Categorical, FloatRange, IntRange
from worker.notes import trial_note
from worker.progress import progress_extra
from worker.runner import HandBack

if TYPE_CHECKING:
    from objectives.checkpoint import Resumable

log = logging.getLogger("hpo.worker")
EPOCHS_ATTR = "epochs"  # the trial's learning curve: a list per figure of objectives.curves.EpochMetrics


# objectives/ brings torch (about 300 MB per process), so it is imported when a trial first trains:
# a slot running a zero-cost objective (benchmarks/scale.py runs 64 on one machine) never loads it.
def load_dataset(*args: Any, **kwargs: Any) -> Any:
    """objectives.data.load_dataset, imported at first use."""
    from objectives.data import load_dataset as load

    return load(*args, **kwargs)


def train(*args: Any, **kwargs: Any) -> Any:
    """objectives.train.train, imported at first use."""
    from objectives.train import train as run

    return run(*args, **kwargs)


def init_weights_file(init: Any, **kwargs: Any) -> Path | None:
    """objectives.init.init_weights_file, imported at first use."""
    from objectives.init import init_weights_file as find

    return find(init, **kwargs)


def find_resumable(path: Path) -> Resumable:
    """objectives.checkpoint.find_resumable, imported at first use."""
    from objectives.checkpoint import find_resumable as find

    return find(path)


@dataclass
class TrialObjective:
    """The objective of one claimed trial (see worker.runner.run_claimed).

    ``should_stop`` is asked at each epoch end; when true the trial is handed back.
    ``study_stopped`` is asked at each epoch end; when true the trial ends as pruned.
    """

    spec: StudySpec
    device: Any
    data_dir: Path
    cache_dir: Path
    checkpoint_dir: Path  # the study's artifact folder (service.artifacts.study_artifact_dir)
    artifact_dir: Path  # HPO_ARTIFACT_DIR, where an init from an earlier study finds its weights
    allow_download: bool
    should_stop: Callable[[], bool]
    study_stopped: Callable[[], bool]
    storage: ResilientRDBStorage  # the study's storage: attributes go through it in as few transactions as possible
    may_be_retry: bool = True  # False for a trial created fresh (not popped from the waiting queue)
    load_fn: Callable[..., Any] = load_dataset  # replaceable (benchmarks use a zero-cost objective)
    train_fn: Callable[..., Any] = train
    handed_back: bool = field(default=False, init=False)
    stopped: bool = field(default=False, init=False)  # ended because its study was stopped or completed
    checkpoint: Path | None = field(default=None, init=False)  # the trial's lineage's, once it is known

    def __call__(self, trial: optuna.Trial) -> float:
        """Train the trial's config; returns the final validation accuracy."""
        params = suggest(trial, self.spec)
        config = self.spec.training_config(params).model_copy(update={"device": self._device_type()})
        root = retried_trial_number(trial) if self.may_be_retry else None
        checkpoint = self.checkpoint = self.checkpoint_dir / f"trial-{trial.number if root is None else root}.pt"
        weights = weights_file(self.checkpoint_dir, trial.number)
        resumable = find_resumable(checkpoint) if root is not None else None
        resume_epoch = resumable.epoch if resumable else None
        attrs: dict[str, Any] = {
            "config": config.model_dump(mode="json"),
            "checkpoint": str(checkpoint),
            "device": self._device_type(),  # compute time per device kind (service/reports)
        }
        if resume_epoch is not None:
            attrs["resumed_from_epoch"] = resume_epoch
        notes = [resumable.note] if resumable and resumable.note is not None else []  # the latest was unusable
        if resume_epoch is not None and resumable and resumable.generator_device != self._device_type():
            notes.append(
                f"its checkpoint's random generator ran on {resumable.generator_device}, this worker trains on "
                f"{self._device_type()}: reseeded from the trial's seed and epoch {resume_epoch}"
            )
        if notes:
            attrs["checkpoint_note"] = "; ".join(notes)
            log.warning("trial %s: %s", trial.number, attrs["checkpoint_note"])
        if resumable:
            report_checkpointed_epochs(trial, resumable.history)
        # Written in the transaction that finishes the trial, whatever its end (the claim wrote "worker").
        self.storage.set_user_attrs_on_finish(trial_id(trial), attrs)
        log.info(
            "trial %s of %s: start%s %s",
            trial.number,
            self.spec.name,
            f" (retry of {root}, resuming after epoch {resume_epoch})" if root is not None else "",
            params,
            extra=progress_extra("start", self.spec.name, trial.number, resume_epoch or 0, self.spec.epochs),
        )
        init_weights = init_weights_file(  # InitError (the trial fails, saying why) if the weights are gone
            config.init,
            objective=config.objective,
            data_dir=self.data_dir,
            artifact_dir=self.artifact_dir,
            allow_download=self.allow_download,
        )
        data = self.load_fn(
            config.dataset.model_dump(),
            data_dir=self.data_dir,
            device=self.device,
            cache_dir=self.cache_dir,
            allow_download=self.allow_download,
        )
        result = self.train_fn(
            data,
            config,
            device=self.device,
            report=self._reporter(trial),
            init_weights=init_weights,
            weights_path=weights,
            checkpoint_path=checkpoint,
            resume_from=resumable.path if resumable else None,
            cache_dir=self.cache_dir,
            on_epoch=self._recorder(trial, config.epochs),
        )
        # val/test accuracy, epochs, seconds, ...: committed together with the COMPLETE state
        finished: dict[str, Any] = {"metrics": result.as_dict()}
        if weights.exists():  # the final weights (GET /studies/{name}/best/model), relative to HPO_ARTIFACT_DIR
            finished["weights"] = weights.relative_to(self.artifact_dir).as_posix()
        self.storage.set_user_attrs_on_finish(trial_id(trial), finished)
        note = trial_note(trial.number, attrs["config"], finished["metrics"])
        self.storage.set_note_on_finish(study_id(trial), trial_id(trial), note)  # shown by optuna-dashboard
        log.info(
            "trial %s of %s: complete, val_accuracy %.4f test_accuracy %.4f, %.0f images/s",
            trial.number,
            self.spec.name,
            result.val_accuracy,
            result.test_accuracy,
            result.images_per_second,
        )
        return result.val_accuracy

    def _device_type(self) -> str:
        """ "cpu" or "cuda": what this slot trains on (a torch.device or its name)."""
        return str(getattr(self.device, "type", self.device)).split(":")[0]

    def discard_checkpoints(self) -> None:
        """Delete the trial's checkpoints: call once it is COMPLETE or PRUNED, when nothing resumes it.

        A checkpoint holds the model and the optimizer's state, and the one before it is kept: about
        37 MB a trial for the full-width CNN, 270 MB for ResNet-18.
        """
        if self.checkpoint is not None and self.checkpoint.exists():  # zero-cost objectives write none
            from objectives.checkpoint import remove_checkpoints

            remove_checkpoints(self.checkpoint)

    def _recorder(self, trial: optuna.Trial, epochs: int) -> Callable[[list[EpochMetrics]], None]:
        """Log each epoch, and record the curve so far with the epoch's report (one transaction)."""

        def record(curve: list[EpochMetrics]) -> None:
            last = curve[-1]
            log.info(
                "trial %s epoch %s/%s loss %.4f val_loss %.4f val_accuracy %.4f",
                trial.number,
                last.epoch,
                epochs,
                last.train_loss,
                last.val_loss,
                last.val_accuracy,
                extra=progress_extra("epoch", self.spec.name, trial.number, last.epoch, epochs, last.val_accuracy),
            )
            self.storage.set_user_attrs_on_report(trial_id(trial), {EPOCHS_ATTR: recorded(curve)})

        return record

    def _reporter(self, trial: optuna.Trial) -> Callable[[int, float], None]:
        def report(epoch: int, val_accuracy: float) -> None:
            trial.report(val_accuracy, epoch)
            if trial.should_prune():
                log.info("trial %s pruned after epoch %s (val_accuracy %.4f)", trial.number, epoch, val_accuracy)
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
            if self.study_stopped():
                self.stopped = True
                trial.set_user_attr("stopped", True)
                log.info("trial %s ends after epoch %s: its study was stopped", trial.number, epoch)
                raise optuna.TrialPruned(f"study stopped after epoch {epoch}")
            if self.should_stop():
                self.handed_back = True
                log.info("trial %s handed back after epoch %s (checkpoint kept)", trial.number, epoch)
                raise HandBack(f"worker shutting down after epoch {epoch}")

        return report


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Ask Optuna for a value of every searched parameter."""
    params: dict[str, Any] = {}
    for name, entry in spec.searched().items():
        if isinstance(entry, FloatRange):
            params[name] = trial.suggest_float(name, entry.low, entry.high, log=entry.log, step=entry.step)
        elif isinstance(entry, IntRange):
            params[name] = trial.suggest_int(name, entry.low, entry.high, log=entry.log, step=entry.step)
        elif isinstance(entry, Categorical):
            params[name] = trial.suggest_categorical(name, entry.choices)
    return params


def hand_back(study: optuna.Study, trial: optuna.trial.FrozenTrial, db: Database) -> None:
    """Re-queue a trial this worker gave up at an epoch boundary, exactly as a stale one would be."""
    db.stale_trial_retry(handed_back=True)(study, trial)


def report_checkpointed_epochs(trial: optuna.Trial, history: tuple[float, ...]) -> None:
    """Report the checkpoint's epochs that the trial lacks.

    Training saves an epoch's checkpoint before reporting it, so a worker killed between the two
    leaves a checkpoint one epoch ahead of what Optuna holds; the retry resumes after that epoch
    and would otherwise never report it.
    """
    reported = trial.storage.get_trial(trial_id(trial)).intermediate_values
    for epoch, val_accuracy in enumerate(history, start=1):
        if epoch not in reported:
            trial.report(val_accuracy, epoch)


def retried_trial_number(trial: optuna.Trial) -> int | None:
    """The number of the lineage's first trial if ``trial`` is a retry, else None."""
    # Optuna's Trial exposes no system attributes, where the retry mark is kept: read the trial back.
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial.storage.get_trial(trial_id(trial)))
