"""What each epoch of a run measured (its learning curve): training and validation loss,
validation accuracy, the epoch's seconds and images per second. A k-fold run records the
folds' mean. The worker writes the curve to its trial (the ``epochs`` user attribute, bounded
to ``MAX_POINTS`` epochs) for the dashboard and the report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

MAX_POINTS = 200  # epochs kept in a trial's recorded curve: longer runs keep an even sample and the last
SIGNIFICANT = 5  # digits kept of each figure


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of a run."""

    epoch: int
    train_loss: float  # mean training loss over the epoch's batches
    val_loss: float  # cross-entropy of the validation predictions (the flip-averaged softmax when eval_flip)
    val_accuracy: float
    seconds: float  # the epoch's training time (all folds)
    images_per_second: float  # training images per second of that time


FIELDS = tuple(name for name in EpochMetrics.__dataclass_fields__)


def fold_log(train_loss: float, val_loss: float, seconds: float, images: int) -> dict[str, float]:
    """One fold's entry for an epoch, as a checkpoint keeps it (its validation accuracy is in its history)."""
    return {"train_loss": train_loss, "val_loss": val_loss, "seconds": seconds, "images": float(images)}


def mean_curve(logs: list[list[dict[str, float]]], histories: list[list[float]]) -> list[EpochMetrics]:
    """The run's curve from each fold's log and validation history: the folds' mean, epoch by epoch.

    A checkpoint from before logs were kept has none for its epochs: those are left out."""
    curve = []
    offset = len(histories[0]) - min(len(log) for log in logs)
    for index, entries in enumerate(zip(*logs, strict=False)):
        seconds = entries[0]["seconds"]  # the folds train in lockstep: one time for all
        images = sum(entry["images"] for entry in entries)
        curve.append(
            EpochMetrics(
                epoch=offset + index + 1,
                train_loss=statistics.fmean(entry["train_loss"] for entry in entries),
                val_loss=statistics.fmean(entry["val_loss"] for entry in entries),
                val_accuracy=statistics.fmean(history[offset + index] for history in histories),
                seconds=seconds,
                images_per_second=images / seconds if seconds else 0.0,
            )
        )
    return curve


def recorded(curve: list[EpochMetrics]) -> dict[str, list[float]]:
    """The curve as a trial records it: a list per field, at most ``MAX_POINTS`` epochs (an even
    sample and the last), each figure to ``SIGNIFICANT`` digits."""
    kept = curve
    if len(curve) > MAX_POINTS:
        step = (len(curve) - 1) / (MAX_POINTS - 1)
        kept = [curve[round(i * step)] for i in range(MAX_POINTS)]
    return {name: [_rounded(getattr(point, name)) for point in kept] for name in FIELDS}


def _rounded(value: float) -> float:
    return value if isinstance(value, int) else float(format(value, _FORMAT))


_FORMAT = f".{SIGNIFICANT}g"
