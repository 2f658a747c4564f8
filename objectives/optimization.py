"""The optimiser, its learning-rate schedule and one epoch of optimisation steps, for the training
loop (objectives.train) whether it feeds images to the whole model or cached features to its head
(objectives.frozen_features)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from objectives.checkpoint import TrainState
from objectives.model import ARCHITECTURES
from objectives.registry import get_objective

MIN_ONE_CYCLE_STEPS = 8  # fewer optimiser steps than this and the rate stays constant

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs and labels


def initial_state(
    model: nn.Module, objective: str, hp: dict, epochs: int, seed: int, n_train: int, device: torch.device
) -> TrainState:
    """A fresh run's state: the optimiser over ``model``'s trainable parameters, a one-cycle schedule
    over ``epochs`` epochs of ``n_train`` images, and the random generator seeded with ``seed``."""
    groups = param_groups(model, objective, hp)
    optimizer: torch.optim.Optimizer
    fused = device.type in ("cpu", "cuda")  # one kernel per step for all parameters, not a few per tensor
    if hp["optimizer"] == "adam":
        optimizer = torch.optim.AdamW(
            groups, lr=hp["lr"], betas=(hp["momentum"], 0.999), weight_decay=hp["weight_decay"], fused=fused
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


def param_groups(model: nn.Module, objective: str, hp: dict) -> list[dict[str, Any]]:
    """The trainable parameters: the backbone at lr x backbone_lr_scale, the head at lr."""
    head = get_objective(objective).head
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(head)]
    classifier = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(head)]
    groups = [{"params": backbone, "lr": hp["lr"] * hp["backbone_lr_scale"]}, {"params": classifier, "lr": hp["lr"]}]
    return [g for g in groups if g["params"]]


def run_epoch(
    state: TrainState,
    size: int,
    hp: dict,
    batch: Callable[[torch.Tensor], Batch],
    forward: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
) -> float:
    """One epoch over ``size`` examples in the order the state's generator shuffles them: ``batch(index)``
    gives a batch's inputs and labels, ``forward`` its logits. Returns the mean training loss."""
    criterion = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    order = torch.randperm(size, generator=state.generator, device=state.generator.device).to(device)
    batch_size, total, count = int(hp["batch_size"]), torch.zeros((), device=device), 0
    for start in range(0, size, batch_size):
        inputs, labels = batch(order[start : start + batch_size])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(forward(inputs), labels)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        _step(state.schedule)
        total += loss.detach() * len(labels)
        count += len(labels)
    return float(total) / max(count, 1)


def _step(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    end = getattr(schedule, "total_steps", None)  # OneCycleLR refuses to step past its last step
    if end is None or schedule.last_epoch < end - 1:
        schedule.step()
