"""Carving a dataset's training images into what trains and what validates.

Three ways, named by a config's ``dataset.validation``: a stratified holdout (``fraction`` of
each class validates), stratified k-fold (each image validates in exactly one of K folds and
trains in the others), or none (every training image trains: the refit of a chosen config).
Caps come first: ``per_class`` images per class at most, then ``limit`` in all (stratified).
Every split is deterministic: the same arguments give the same images, whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from objectives.config import capped_counts

SPLIT_SEED = 0  # the holdout split must not depend on a trial's seed: every trial sees the same one


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x 3 x H x W) and labels (int64, N) of one split."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """This split moved to ``device``."""
        return Split(self.images.to(device), self.labels.to(device))

    def take(self, index: torch.Tensor) -> Split:
        """The images at ``index`` (sorted, so that a split keeps the folder's order)."""
        index = index.sort().values.to(self.labels.device)
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Fold:
    """What one model trains on and is validated on, and the pixel statistics of its training images."""

    train: Split
    val: Split
    mean: torch.Tensor
    std: torch.Tensor


def pixel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units, shaped ``(1, 3, 1, 1)``."""
    pixels = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return pixels.mean(1).view(1, -1, 1, 1), pixels.std(1).clamp_min(1e-3).view(1, -1, 1, 1)


def split_train_val(
    train: Split, *, limit: int | None, val_fraction: float, per_class: int | None = None
) -> tuple[Split, Split]:
    """The stratified holdout: ``val_fraction`` of each class's (capped) images validate."""
    fit_idx, val_idx = [], []
    for members in _capped_members(train, limit, per_class, SPLIT_SEED):
        n_val = round(len(members) * val_fraction)
        val_idx.append(members[:n_val])
        fit_idx.append(members[n_val:])
    return train.take(torch.cat(fit_idx)), train.take(torch.cat(val_idx))


def kfold_splits(
    train: Split, *, folds: int, seed: int, limit: int | None, per_class: int | None = None
) -> list[tuple[Split, Split]]:
    """Stratified k-fold: each class's (capped) images, shuffled by ``seed``, are dealt round the
    ``folds`` folds; fold k validates on its share and trains on the others'."""
    members = _capped_members(train, limit, per_class, SPLIT_SEED + seed)
    fewest = min(len(m) for m in members)
    if fewest < folds:
        raise ValueError(
            f"dataset.validation.folds: {folds} folds need {folds} images per class; one class has {fewest}"
        )
    shares = [torch.arange(len(m)) % folds for m in members]
    out = []
    for k in range(folds):
        val = torch.cat([m[share == k] for m, share in zip(members, shares, strict=True)])
        fit = torch.cat([m[share != k] for m, share in zip(members, shares, strict=True)])
        out.append((train.take(fit), train.take(val)))
    return out


def make_folds(train: Split, dataset: dict[str, Any]) -> list[tuple[Split, Split]]:
    """The (train, validation) pairs ``dataset`` asks for (``validation``, else ``val_fraction``)."""
    limit, per_class = dataset.get("limit"), dataset.get("per_class")
    validation = dataset.get("validation") or {"kind": "holdout", "fraction": dataset.get("val_fraction") or 0.1}
    if validation["kind"] == "kfold":
        return kfold_splits(
            train, folds=validation["folds"], seed=validation.get("seed") or 0, limit=limit, per_class=per_class
        )
    fraction = validation.get("fraction", 0.1) if validation["kind"] == "holdout" else 0.0
    return [split_train_val(train, limit=limit, val_fraction=fraction, per_class=per_class)]


def _capped_members(train: Split, limit: int | None, per_class: int | None, seed: int) -> list[torch.Tensor]:
    """Each class's image indices, shuffled by ``seed``, capped by ``per_class`` and then ``limit`` (stratified)."""
    generator = torch.Generator().manual_seed(seed)
    labels = train.labels.cpu()
    members = [(labels == label).nonzero().flatten() for label in labels.unique(sorted=True).tolist()]
    keep = capped_counts([len(m) for m in members], limit, per_class)
    return [m[torch.randperm(len(m), generator=generator)][:k] for m, k in zip(members, keep, strict=True)]
