"""The training loop: ``train(data, config)`` runs one training config and returns its metrics.

The config (objectives.config.TrainingConfig) names the objective, its parameters (the
registry, objectives.registry, gives their meaning, range and default), epochs and seed.
Every epoch the loop measures validation accuracy, saves a checkpoint if asked to,
and calls ``report(epoch, val_accuracy)``, which may raise to stop the run (pruning, or a
worker handing its trial back). A run resumed from the checkpoint of epoch k ends exactly
as the uninterrupted run would (bit-identical on CPU with a fixed seed).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives.allocator import keep_freed_memory
from objectives.augment import augment
from objectives.checkpoint import TrainState, load_checkpoint, mean_history, save_checkpoint
from objectives.config import KFOLD_RESULT, TrainingConfig
from objectives.curves import EpochMetrics, fold_log, mean_curve
from objectives.data import Dataset, Split
from objectives.evaluate import measure_ensemble, prepare
from objectives.files import save_atomically
from objectives.frozen_features import FrozenFeatures, feature_measures, head_only
from objectives.init import input_scaling, load_initial_weights
from objectives.model import ARCHITECTURES, build_model
from objectives.optimization import initial_state, run_epoch
from objectives.registry import get_objective
from objectives.splits import Fold

ReportFn = Callable[[int, float], None]


@dataclass(frozen=True)
class TrainResult:
    """What one training run measured. Accuracies are fractions in [0, 1]."""

    val_accuracy: float
    test_accuracy: float
    loss: float  # mean training loss of the last epoch
    epochs: int  # epochs run in total, including any before a resume
    seconds: float  # wall time of this process's training and evaluation
    images_per_second: float  # training images per second of training time
    device: str
    threads: int  # torch CPU threads; CPU results are bit-identical only at the same count
    fold_val_accuracies: list[float] = field(default_factory=list)  # k-fold: each fold's, whose mean val_accuracy is
    fold_test_accuracies: list[float] = field(default_factory=list)  # k-fold: each fold model's alone
    val_accuracy_std: float = 0.0  # k-fold: the spread of the folds' validation accuracies

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict; the k-fold figures only for a k-fold run (a holdout's
        empty lists and zero spread would read as a k-fold result)."""
        result = asdict(self)
        if not self.fold_val_accuracies:
            for key in KFOLD_RESULT:
                del result[key]
        return result


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    data: Dataset,
    config: TrainingConfig,
    *,
    device: torch.device | str | None = None,
    report: ReportFn | None = None,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    on_epoch: Callable[[list[EpochMetrics]], None] | None = None,
    init_weights: str | Path | None = None,
    weights_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    reuse_features: bool = True,
) -> TrainResult:
    """Train ``config`` on ``data`` (its dataset, loaded by objectives.data.load_dataset); return the metrics.

    ``init_weights``: start from this state_dict file (the file ``config.init`` names, found by
    objectives.init.init_weights_file; loaded by objectives.init.load_initial_weights).
    ``checkpoint_path``: save the full training state there after every epoch.
    ``resume_from``: continue from such a checkpoint (its epoch count is kept).
    ``weights_path``: save the final weights there (a state_dict, on CPU).
    ``on_epoch(curve)``: progress hook, called before ``report`` with every epoch's metrics so far
    (objectives.curves; a resumed run's include those before the resume).
    ``cache_dir``: where a head-only run keeps its frozen backbone's features (objectives.frozen_features);
    ``reuse_features=False`` runs it through the whole model every epoch instead (benchmarks/frozen_features.py).
    """
    objective, epochs, seed, hp = config.objective, config.epochs, config.seed, config.hyperparameters()
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cpu":
        keep_freed_memory()
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # a run's shapes are fixed: time cuDNN's kernels once, keep the fastest
    data = _scaled_for(data, config)
    states: list[TrainState] = []
    features: list[FrozenFeatures | None] = []
    for k, fold in enumerate(data.folds):  # fold k's model starts from seed + k
        model = _build_model(objective, hp, len(data.classes), init_weights, device, seed + k)
        model.get_buffer("input_mean").copy_(fold.mean)
        model.get_buffer("input_std").copy_(fold.std)
        states.append(initial_state(model, objective, hp, epochs, seed + k, len(fold.train), device))
        cached = None
        if init_weights is not None and reuse_features and head_only(objective, hp, init_weights):
            cached = FrozenFeatures(model, objective, hp, init_weights, (fold.mean, fold.std), cache_dir)
        features.append(cached)
    if resume_from is not None:
        load_checkpoint(resume_from, states, seeds=[seed + k for k in range(len(states))])
    members = list(zip(states, data.folds, features, strict=True))
    train_seconds = images_seen = loss = 0.0
    flip, shift = hp["eval_flip"], hp["eval_shift"]
    started = time.perf_counter()
    for epoch in range(states[0].epoch + 1, epochs + 1):  # the folds in lockstep, epoch by epoch
        tick = time.perf_counter()
        losses = [_train_epoch(state, fold, hp, cached) for state, fold, cached in members]
        seconds = time.perf_counter() - tick
        train_seconds += seconds
        images_seen += sum(len(fold.train) for fold in data.folds)
        for member, fold_loss in zip(members, losses, strict=True):
            state, fold = member[0], member[1]
            accuracy, val_loss = _measure([member], fold.val, flip=flip, shift=False)
            state.epoch, state.history = epoch, [*state.history, accuracy]
            state.log = [*state.log, fold_log(fold_loss, val_loss, seconds, len(fold.train))]
        loss, val_accuracy = statistics.fmean(losses), mean_history(states)[-1]
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, states)
        if on_epoch is not None:
            on_epoch(mean_curve([state.log for state in states], [state.history for state in states]))
        if report is not None:
            report(epoch, val_accuracy)
    if weights_path is not None and len(states) == 1:  # k-fold keeps K models: its shipped model is the refit
        weights = states[0].model.state_dict()
        save_atomically({k: v.detach().cpu().contiguous() for k, v in weights.items()}, weights_path)
    return _result(members, data, flip, shift, loss, train_seconds, images_seen, started, device)


Member = tuple[TrainState, Fold, FrozenFeatures | None]  # a fold's model, its images, its cached features if head-only


def _scaled_for(data: Dataset, config: TrainingConfig) -> Dataset:
    """``data`` with every fold's input scaling set to what the starting weights expect, where they
    say (pretrained weights); otherwise as it is (each fold's own pixel statistics)."""
    scaling = input_scaling(config.init)
    if scaling is None:
        return data
    device = data.folds[0].mean.device
    mean, std = (torch.tensor(values, device=device).view(1, 3, 1, 1) for values in scaling)
    return replace(data, folds=[replace(fold, mean=mean, std=std) for fold in data.folds])


def _accuracy(members: list[Member], split: Split, *, flip: bool, shift: bool) -> float:
    """The members' ensemble accuracy on ``split``."""
    return _measure(members, split, flip=flip, shift=shift)[0]


def _measure(members: list[Member], split: Split, *, flip: bool, shift: bool) -> tuple[float, float]:
    """The members' ensemble accuracy and loss on ``split``: on their cached features when they have them."""
    if members[0][2] is not None:
        return feature_measures(
            [(state.model, cached) for state, _, cached in members if cached], split, flip=flip, shift=shift
        )
    return measure_ensemble(
        [(state.model, fold.mean, fold.std) for state, fold, _ in members], split, flip=flip, shift=shift
    )


def _result(
    members: list[Member],
    data: Dataset,
    flip: bool,
    shift: bool,
    loss: float,
    train_seconds: float,
    images_seen: float,
    started: float,
    device: torch.device,
) -> TrainResult:
    """The run's metrics: the folds' mean validation accuracy, and the test accuracy of their averaged predictions.

    The epochs' validation accuracies (the learning curve) were measured with the flip alone;
    ``shift``'s views cost three times as much, so only this final evaluation takes them.
    """
    states = [state for state, _, _ in members]
    fold_val = [
        m[0].history[-1] if m[0].history and not shift else _accuracy([m], m[1].val, flip=flip, shift=shift)
        for m in members
    ]
    kfold = len(states) > 1
    return TrainResult(
        val_accuracy=statistics.fmean(fold_val),
        test_accuracy=_accuracy(members, data.test, flip=flip, shift=shift),
        loss=float(loss),
        epochs=states[0].epoch,
        seconds=time.perf_counter() - started,
        images_per_second=images_seen / train_seconds if train_seconds else 0.0,
        device=_device_name(device),
        threads=torch.get_num_threads(),
        fold_val_accuracies=fold_val if kfold else [],
        fold_test_accuracies=[_accuracy([m], data.test, flip=flip, shift=shift) for m in members] if kfold else [],
        val_accuracy_std=statistics.pstdev(fold_val) if kfold else 0.0,
    )


def _build_model(
    objective: str, hp: dict, num_classes: int, init_weights: str | Path | None, device: torch.device, seed: int
) -> nn.Module:
    """The objective's model, from ``init_weights`` if given, with ``hp["freeze"]`` leading blocks frozen."""
    torch.manual_seed(seed)
    model = build_model(objective, hp, num_classes)
    if init_weights is not None:
        load_initial_weights(model, Path(init_weights), get_objective(objective).head)
    for block in ARCHITECTURES[objective].blocks(model)[: hp["freeze"]]:
        block.requires_grad_(False)
    # channels_last speeds convolutions up on CPU (oneDNN, about 1.5x here) as well as on CUDA
    return model.to(device).to(memory_format=torch.channels_last)


def _train_epoch(state: TrainState, fold: Fold, hp: dict, cached: FrozenFeatures | None) -> float:
    """One epoch of ``state``'s model on ``fold``'s training images (on their cached features if head-only)."""
    if cached is not None:
        return cached.train_epoch(state, fold.train, hp)
    model, split, device = state.model, fold.train, fold.train.images.device
    model.train()
    for block in state.frozen:  # a frozen block's BatchNorm keeps its running statistics too
        block.eval()

    def batch(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = augment(prepare(split.images[index], fold.mean, fold.std), hp["aug_strength"], state.generator)
        return inputs, split.labels[index]

    return run_epoch(state, len(split), hp, batch, model, device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
