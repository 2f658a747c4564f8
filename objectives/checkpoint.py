"""The full training state, and saving/loading it atomically without pickle.

Each save keeps the checkpoint before it (``previous_path``), so a retry that finds the latest
one unreadable (a disk filled up, a file cut short) resumes from the one before, not from scratch.

A checkpoint resumes on either device type. Everything but the random generator's state moves
between CPU and CUDA as it is; a generator's state does not (a CUDA generator's is 16 bytes, a
CPU one's 5,056), so a run resumed on the other device type reseeds its generator from the
fold's seed and the epoch (``reseeded``): deterministic, but not the stream the original run
would have drawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from objectives.files import save_atomically
from objectives.shapes import NORMALISATION


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the original stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator  # drives shuffling and augmentation
    epoch: int = 0  # epochs completed
    history: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    log: list[dict[str, float]] = field(default_factory=list)  # each epoch's losses and time (objectives.curves)
    frozen: list[nn.Module] = field(default_factory=list)  # blocks that stay in eval mode (not saved: config)


@dataclass(frozen=True)
class Resumable:
    """Where a retry resumes: the file and its epoch (None, None: from scratch), the validation
    accuracy after each of those epochs, and why not the latest checkpoint when that one could
    not be used."""

    path: Path | None
    epoch: int | None
    note: str | None = None
    history: tuple[float, ...] = ()
    generator_device: str | None = None  # "cpu" or "cuda": where the checkpoint's random generator ran


CUDA_GENERATOR_STATE_BYTES = 16  # a CUDA generator's state (seed and offset); a CPU one's is 5,056


def generator_device(fold: dict) -> str:
    """The device type of a checkpointed fold's generator (checkpoints before it was recorded:
    told by the state's size)."""
    recorded = fold.get("generator_device")
    if recorded is not None:
        return str(recorded)
    return "cuda" if fold["generator"].numel() == CUDA_GENERATOR_STATE_BYTES else "cpu"


def reseeded(seed: int, epoch: int) -> int:
    """The seed a fold's generator restarts from when its checkpoint's state came from another
    device type: a function of the fold's seed and the epoch resumed after, so a retry is repeatable."""
    return seed * 1_000_003 + epoch


def previous_path(path: str | Path) -> Path:
    """Where ``save_checkpoint`` keeps the checkpoint before the latest."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def remove_checkpoints(path: str | Path) -> None:
    """Delete a lineage's checkpoint and the one before it (a finished trial never resumes)."""
    for candidate in (Path(path), previous_path(path)):
        candidate.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, states: list[TrainState]) -> None:
    """Write every fold's state to ``path`` atomically (a reader never sees a half-written file),
    keeping the checkpoint it replaces at ``previous_path(path)``.

    ``epoch`` and ``history`` at the top are the run's: the epochs done, and the validation
    accuracy after each, averaged over the folds (what the run reported).
    """
    payload = {
        "epoch": states[0].epoch,
        "history": mean_history(states),
        "folds": [
            {
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "schedule": state.schedule.state_dict(),
                "generator": state.generator.get_state(),
                "generator_device": state.generator.device.type,
                "history": state.history,
                "log": state.log,
            }
            for state in states
        ],
    }
    path = Path(path)
    if path.exists():
        os.replace(path, previous_path(path))
    save_atomically(payload, path)


def mean_history(states: list[TrainState]) -> list[float]:
    """The validation accuracy after each epoch, averaged over the folds."""
    return [sum(accuracies) / len(accuracies) for accuracies in zip(*(s.history for s in states), strict=True)]


def load_checkpoint(path: str | Path, states: list[TrainState], seeds: list[int]) -> None:
    """Restore every fold's state in place from a checkpoint (loaded with ``weights_only=True``).

    ``seeds``: each fold's seed, to reseed its generator if the checkpoint's came from another
    device type (see the module's docstring).
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    folds = payload.get("folds") or [payload]  # a checkpoint from before k-fold holds one model at the top
    if len(folds) != len(states):
        raise RuntimeError(f"checkpoint {Path(path).name} holds {len(folds)} folds; this run trains {len(states)}")
    for state, fold, seed in zip(states, folds, seeds, strict=True):
        missing, unexpected = state.model.load_state_dict(fold["model"], strict=False)
        if unexpected or set(missing) - set(NORMALISATION):  # checkpoints from before the buffers lack only those
            raise RuntimeError(
                f"checkpoint {Path(path).name} does not fit the model: lacks {missing}, has {unexpected}"
            )
        state.optimizer.load_state_dict(fold["optimizer"])
        state.schedule.load_state_dict(fold["schedule"])
        state.epoch = int(payload["epoch"])
        if generator_device(fold) == state.generator.device.type:
            state.generator.set_state(fold["generator"])
        else:
            state.generator.manual_seed(reseeded(seed, state.epoch))
        state.history = [float(v) for v in fold["history"]]
        state.log = [
            {k: float(v) for k, v in entry.items()} for entry in fold.get("log", [])
        ]  # none before they were kept


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch a checkpoint was taken after, or None when there is none."""
    progress = _checkpoint_progress(Path(path))
    return progress[0] if progress else None


def _checkpoint_progress(path: Path) -> tuple[int, tuple[float, ...], str] | None:
    """A checkpoint's epoch, validation history and generator device type, or None when there is no file."""
    if not path.exists():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    folds = payload.get("folds") or [payload]
    return int(payload["epoch"]), tuple(float(v) for v in payload["history"]), generator_device(folds[0])


def find_resumable(path: str | Path) -> Resumable:
    """The newest readable checkpoint of a lineage: ``path``, else the one before it, else none.

    An unreadable file is renamed ``*.unreadable`` (kept to look at, and out of the way of the
    next save, which would otherwise keep it as the previous checkpoint).
    """
    path = Path(path)
    problems: list[str] = []
    for candidate in (path, previous_path(path)):
        try:
            progress = _checkpoint_progress(candidate)
        except Exception as exc:  # whatever a damaged file makes torch.load raise
            problems.append(f"{candidate.name} was unreadable ({type(exc).__name__}: {str(exc)[:120]})")
            os.replace(candidate, candidate.with_name(candidate.name + ".unreadable"))
            continue
        if progress is None:
            continue
        epoch, history, device = progress
        if candidate == path:
            return Resumable(candidate, epoch, history=history, generator_device=device)
        note = "; ".join([*problems, f"resumed from {candidate.name}"])
        return Resumable(candidate, epoch, note, history, generator_device=device)
    return Resumable(None, None, "; ".join([*problems, "started afresh"]) if problems else None)
