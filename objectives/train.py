"""The training loop: ``train(data, config)`` runs one training config and returns its metrics.

The config (objectives.config.TrainingConfig) names the objective, its parameters (the
registry, objectives.registry, gives their meaning, range and default), epochs and seed.
Every epoch the loop measures validation accuracy, saves a checkpoint if asked to,
and calls ``report(epoch, val_accuracy)``, which may raise to stop the run (pruning, or a
worker handing its trial back). A run resumed from the checkpoint of epoch k ends exactly
as the uninterrupted run would (bit-identical on CPU with a fixed seed).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives.allocator import keep_freed_memory
from objectives.augment import augment
from objectives.checkpoint import TrainState, load_checkpoint, mean_history, save_checkpoint
from objectives.config import TrainingConfig
from objectives.data import Dataset, Split
from objectives.evaluate import evaluate, evaluate_ensemble, prepare
from objectives.files import save_atomically
from objectives.init import load_initial_weights
from objectives.model import ARCHITECTURES, build_model
from objectives.registry import get_objective

MIN_ONE_CYCLE_STEPS = 8  # fewer optimiser steps than this and the rate stays constant

ReportFn = Callable[[int, float], None]
KFOLD_ONLY = ("fold_val_accuracies", "fold_test_accuracies", "val_accuracy_std")  # TrainResult.as_dict


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
            for key in KFOLD_ONLY:
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
    on_epoch: Callable[[int, float, float], None] | None = None,
    init_weights: str | Path | None = None,
    weights_path: str | Path | None = None,
) -> TrainResult:
    """Train ``config`` on ``data`` (its dataset, loaded by objectives.data.load_dataset); return the metrics.

    ``init_weights``: start from this state_dict file (the file ``config.init`` names, found by
    objectives.init.init_weights_file; loaded by objectives.init.load_initial_weights).
    ``checkpoint_path``: save the full training state there after every epoch.
    ``resume_from``: continue from such a checkpoint (its epoch count is kept).
    ``weights_path``: save the final weights there (a state_dict, on CPU).
    ``on_epoch(epoch, loss, val_accuracy)``: progress hook, called before ``report``.
    """
    objective, epochs, seed, hp = config.objective, config.epochs, config.seed, config.hyperparameters()
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cpu":
        keep_freed_memory()
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # a run's shapes are fixed: time cuDNN's kernels once, keep the fastest
    states = []
    for k, fold in enumerate(data.folds):  # fold k's model starts from seed + k
        model = _build_model(objective, hp, len(data.classes), init_weights, device, seed + k)
        model.get_buffer("input_mean").copy_(fold.mean)
        model.get_buffer("input_std").copy_(fold.std)
        states.append(_initial_state(model, objective, hp, epochs, seed + k, len(fold.train), device))
    if resume_from is not None:
        load_checkpoint(resume_from, states, seeds=[seed + k for k in range(len(states))])
    train_seconds = images_seen = loss = 0.0
    flip, shift = hp["eval_flip"], hp["eval_shift"]
    started = time.perf_counter()
    for epoch in range(states[0].epoch + 1, epochs + 1):  # the folds in lockstep, epoch by epoch
        tick = time.perf_counter()
        pairs = list(zip(states, data.folds, strict=True))
        losses = [_train_epoch(state, fold.train, hp, fold.mean, fold.std) for state, fold in pairs]
        train_seconds += time.perf_counter() - tick
        images_seen += sum(len(fold.train) for fold in data.folds)
        for state, fold in pairs:
            accuracy = evaluate(state.model, fold.val, fold.mean, fold.std, flip=flip)
            state.epoch, state.history = epoch, [*state.history, accuracy]
        loss, val_accuracy = statistics.fmean(losses), mean_history(states)[-1]
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, states)
        if on_epoch is not None:
            on_epoch(epoch, loss, val_accuracy)
        if report is not None:
            report(epoch, val_accuracy)
    if weights_path is not None and len(states) == 1:  # k-fold keeps K models: its shipped model is the refit
        weights = states[0].model.state_dict()
        save_atomically({k: v.detach().cpu().contiguous() for k, v in weights.items()}, weights_path)
    return _result(states, data, flip, shift, loss, train_seconds, images_seen, started, device)


def _result(
    states: list[TrainState],
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
    members = [(state.model, fold.mean, fold.std) for state, fold in zip(states, data.folds, strict=True)]
    fold_val = [
        s.history[-1] if s.history and not shift else evaluate(s.model, f.val, f.mean, f.std, flip=flip, shift=shift)
        for s, f in zip(states, data.folds, strict=True)
    ]
    kfold = len(states) > 1
    return TrainResult(
        val_accuracy=statistics.fmean(fold_val),
        test_accuracy=evaluate_ensemble(members, data.test, flip=flip, shift=shift),
        loss=float(loss),
        epochs=states[0].epoch,
        seconds=time.perf_counter() - started,
        images_per_second=images_seen / train_seconds if train_seconds else 0.0,
        device=_device_name(device),
        threads=torch.get_num_threads(),
        fold_val_accuracies=fold_val if kfold else [],
        fold_test_accuracies=[evaluate_ensemble([m], data.test, flip=flip, shift=shift) for m in members]
        if kfold
        else [],
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


def _param_groups(model: nn.Module, objective: str, hp: dict) -> list[dict[str, Any]]:
    """The trainable parameters: the backbone at lr x backbone_lr_scale, the head at lr."""
    head = get_objective(objective).head
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(head)]
    classifier = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(head)]
    groups = [{"params": backbone, "lr": hp["lr"] * hp["backbone_lr_scale"]}, {"params": classifier, "lr": hp["lr"]}]
    return [g for g in groups if g["params"]]


def _initial_state(
    model: nn.Module, objective: str, hp: dict, epochs: int, seed: int, n_train: int, device: torch.device
) -> TrainState:
    groups = _param_groups(model, objective, hp)
    optimizer: torch.optim.Optimizer
    fused = device.type in ("cpu", "cuda")  # one kernel per step for all parameters, not a few per tensor
    if hp["optimizer"] == "adam":
        optimizer = torch.optim.AdamW(
            groups,
            lr=hp["lr"],
            betas=(hp["momentum"], 0.999),
            weight_decay=hp["weight_decay"],
            fused=fused,
        )
    elif hp["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(
            groups,
            lr=hp["lr"],
            momentum=hp["momentum"],
            nesterov=hp["momentum"] > 0,
            weight_decay=hp["weight_decay"],
            fused=fused,
        )
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {hp['optimizer']!r}")
    steps = epochs * math.ceil(n_train / int(hp["batch_size"]))
    schedule: torch.optim.lr_scheduler.LRScheduler
    if steps >= MIN_ONE_CYCLE_STEPS:
        peaks = [group["lr"] for group in groups]
        # cycle_momentum off: OneCycleLR's default overwrites SGD's momentum (Adam's beta1) with its own
        # 0.95 -> 0.85 cycle at every step, and the searched ``momentum`` would do nothing.
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=steps, pct_start=0.25, anneal_strategy="linear", cycle_momentum=False
        )
    else:  # one-cycle needs a step or two per phase (it divides by zero otherwise): keep the rate constant
        schedule = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    generator = torch.Generator(device=device).manual_seed(seed)
    frozen = ARCHITECTURES[objective].blocks(model)[: hp["freeze"]]
    return TrainState(model=model, optimizer=optimizer, schedule=schedule, generator=generator, frozen=frozen)


def _train_epoch(state: TrainState, split: Split, hp: dict, mean: torch.Tensor, std: torch.Tensor) -> float:
    model, device = state.model, split.images.device
    model.train()
    for block in state.frozen:  # a frozen block's BatchNorm keeps its running statistics too
        block.eval()
    criterion = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    order = torch.randperm(len(split), generator=state.generator, device=state.generator.device).to(device)
    batch_size, total, count = int(hp["batch_size"]), torch.zeros((), device=device), 0
    for start in range(0, len(split), batch_size):
        index = order[start : start + batch_size]
        inputs = augment(prepare(split.images[index], mean, std), hp["aug_strength"], state.generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(inputs), split.labels[index])
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        _step(state.schedule)
        total += loss.detach() * len(index)
        count += len(index)
    return float(total) / max(count, 1)


def _step(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    end = getattr(schedule, "total_steps", None)  # OneCycleLR refuses to step past its last step
    if end is None or schedule.last_epoch < end - 1:
        schedule.step()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
