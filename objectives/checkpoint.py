"""The full training state, and saving/loading it atomically without pickle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from objectives.files import save_atomically


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the original stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # drives shuffling and augmentation
    epoch: int = 0  # epochs completed
    history: list[float] = field(default_factory=list)  # validation accuracy after each epoch


def save_checkpoint(path: str | Path, state: TrainState) -> None:
    """Write ``state`` to ``path`` atomically (a reader never sees a half-written file)."""
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "generator": state.generator.get_state(),
        "epoch": state.epoch,
        "history": state.history,
    }
    save_atomically(payload, path)


def load_checkpoint(path: str | Path, state: TrainState) -> None:
    """Restore ``state`` in place from a checkpoint (loaded with ``weights_only=True``)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.schedule.load_state_dict(payload["schedule"])
    state.generator.set_state(payload["generator"])
    state.epoch = int(payload["epoch"])
    state.history = [float(v) for v in payload["history"]]


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint was taken after, or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
