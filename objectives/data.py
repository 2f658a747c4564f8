"""Datasets as whole uint8 tensors on the training device.

An image folder (``train/`` and ``test/`` of class folders) is decoded once into an
``(N, 3, H, W)`` uint8 tensor plus int64 labels and cached on disk, keyed by the names, sizes
and modification times of its files, so later loads skip JPEG decoding. Within a process
the decoded tensors stay on the device and are shared by every trial.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from objectives.files import save_atomically
from objectives.paths import resolve_under

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SPLIT_SEED = 0  # the validation split must not depend on a trial's seed: every trial sees the same one


class DatasetError(RuntimeError):
    """The dataset is missing or malformed; the message says what to do."""


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


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus class names. Validation is carved from train.

    ``mean`` and ``std`` (``(1, 3, 1, 1)``): the training split's per-channel pixel statistics,
    in [0, 1] units, which every model trained on it standardises its inputs with.
    """

    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor


_MEMORY: dict[tuple[str, str], tuple[Split, Split, list[str]]] = {}
_STATISTICS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # computed once per selection of a dataset


def load_dataset(
    dataset: dict,
    *,
    data_dir: str | Path,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    allow_download: bool = False,
) -> Dataset:
    """Load the dataset a config names (``{"kind": "imagefolder", "path": ...}`` or ``{"kind": "cifar10"}``).

    ``classes`` (class folder names) keeps those classes only, labelled 0, 1, ... in that order,
    in train and test alike. ``per_class`` caps the training images of each class and ``limit``
    the training images in all (both stratified and deterministic); ``val_fraction`` (default
    0.1) carves a deterministic, stratified validation split out of what remains. The test
    split is returned whole (for the chosen classes).
    """
    kind = dataset.get("kind")
    device = torch.device(device)
    key_path = dataset.get("path", "cifar10") if kind == "imagefolder" else "cifar10"
    memo_key = (f"{kind}:{Path(data_dir).resolve()}:{key_path}", str(device))
    if memo_key not in _MEMORY:
        if kind == "imagefolder":
            root = resolve_under(data_dir, dataset["path"])
            train, test, classes = _load_imagefolder(root, cache_dir)
        elif kind == "cifar10":
            train, test, classes = _load_cifar10(Path(data_dir).resolve() / "cifar10", allow_download)
        else:
            raise DatasetError(f"unknown dataset kind {kind!r}; use 'imagefolder' or 'cifar10'")
        _MEMORY[memo_key] = (train.to(device), test.to(device), classes)
    train, test, classes = _MEMORY[memo_key]
    if dataset.get("classes"):
        wanted = list(dataset["classes"])
        train, test, classes = select_classes(train, classes, wanted), select_classes(test, classes, wanted), wanted
    limit, val_fraction, per_class = dataset.get("limit"), dataset.get("val_fraction", 0.1), dataset.get("per_class")
    fit, val = split_train_val(train, limit=limit, val_fraction=val_fraction, per_class=per_class)
    selection = (*memo_key, tuple(classes), limit, val_fraction, per_class)
    if selection not in _STATISTICS:
        _STATISTICS[selection] = pixel_statistics(fit.images)
    mean, std = _STATISTICS[selection]
    return Dataset(train=fit, val=val, test=test, classes=list(classes), mean=mean, std=std)


def pixel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units, shaped ``(1, 3, 1, 1)``."""
    pixels = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return pixels.mean(1).view(1, -1, 1, 1), pixels.std(1).clamp_min(1e-3).view(1, -1, 1, 1)


def select_classes(split: Split, names: list[str], wanted: list[str]) -> Split:
    """The images of the classes ``wanted`` (names from ``names``), relabelled 0, 1, ... in that order."""
    missing = [name for name in wanted if name not in names]
    if missing:
        raise DatasetError(f"dataset.classes: no class {', '.join(map(repr, missing))}; the dataset has {names}")
    relabel = torch.full((len(names),), -1, dtype=torch.int64, device=split.labels.device)
    for new, name in enumerate(wanted):
        relabel[names.index(name)] = new
    labels = relabel[split.labels]
    keep = (labels >= 0).nonzero().flatten()
    return Split(split.images[keep], labels[keep])


def split_train_val(
    train: Split, *, limit: int | None, val_fraction: float, per_class: int | None = None
) -> tuple[Split, Split]:
    """Stratified ``per_class`` and ``limit`` caps and validation split, the same for every call
    with the same arguments."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    labels = train.labels.cpu()
    counts = labels.bincount()
    if per_class is not None:
        counts = counts.clamp(max=per_class)
    total = int(counts.sum())
    fit_idx, val_idx = [], []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)][: int(counts[label])]
        keep = len(members) if limit is None else round(limit * len(members) / total)
        n_val = round(keep * val_fraction)
        val_idx.append(members[:n_val])
        fit_idx.append(members[n_val:keep])
    fit = torch.cat(fit_idx).sort().values.to(train.labels.device)
    val = torch.cat(val_idx).sort().values.to(train.labels.device)
    return Split(train.images[fit], train.labels[fit]), Split(train.images[val], train.labels[val])


def _load_imagefolder(root: Path, cache_dir: str | Path | None) -> tuple[Split, Split, list[str]]:
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DatasetError(f"{root} must hold '{part}/' with one folder of images per class")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"{root / 'train'} holds no class folders")
    files = {part: _list_images(root / part, classes) for part in ("train", "test")}
    cache_file = _cache_path(root, files, cache_dir)
    if cache_file is not None and cache_file.exists():
        cached = torch.load(cache_file, weights_only=True)
        return Split(cached["train_x"], cached["train_y"]), Split(cached["test_x"], cached["test_y"]), classes
    train, test = (_decode(files[part]) for part in ("train", "test"))
    if cache_file is not None:
        save_atomically(
            {"train_x": train.images, "train_y": train.labels, "test_x": test.images, "test_y": test.labels},
            cache_file,
        )
    return train, test, classes


def _list_images(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    out = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            raise DatasetError(f"{folder} has no folder for class {name!r} (classes come from train/)")
        out += [(p, label) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not out:
        raise DatasetError(f"{folder} holds no .jpg/.jpeg/.png images")
    return out


def _cache_path(root: Path, files: dict[str, list[tuple[Path, int]]], cache_dir: str | Path | None) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(str(root).encode())
    for part, entries in files.items():
        for path, label in entries:
            stat = path.stat()
            digest.update(f"{part}/{path.relative_to(root)}:{label}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return Path(cache_dir) / f"imagefolder-{digest.hexdigest()[:24]}.pt"


def _decode(entries: list[tuple[Path, int]]) -> Split:
    images = []
    for path, _ in entries:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError) as exc:  # PIL: cut short, or not an image; its message names no file
            raise DatasetError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DatasetError(f"images must all have one size; found {sorted(shapes)[:3]}")
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # N,H,W,C -> N,C,H,W
    return Split(pixels, torch.tensor([label for _, label in entries], dtype=torch.int64))


def _load_cifar10(root: Path, allow_download: bool) -> tuple[Split, Split, list[str]]:
    from torchvision.datasets import CIFAR10

    try:
        train_set = CIFAR10(str(root), train=True, download=allow_download)
        test_set = CIFAR10(str(root), train=False, download=allow_download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DatasetError(
            f"CIFAR-10 not found under {root}: put the extracted 'cifar-10-batches-py' folder there "
            "(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or allow downloads with "
            "HPO_ALLOW_DOWNLOAD=1 on a machine with internet access"
        ) from exc

    def to_split(ds: CIFAR10) -> Split:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return Split(images, torch.tensor(ds.targets, dtype=torch.int64))

    return to_split(train_set), to_split(test_set), list(train_set.classes)


def clear_memory_cache() -> None:
    """Forget the datasets this process holds (the on-disk cache stays)."""
    _MEMORY.clear()
    _STATISTICS.clear()
