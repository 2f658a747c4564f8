"""Datasets as whole uint8 tensors on the training device.

An image folder (``train/`` and ``test/`` of class folders) is decoded once into an
``(N, 3, H, W)`` uint8 tensor plus int64 labels and cached on disk, keyed by the names, sizes
and modification times of its files, so later loads skip JPEG decoding. Within a process
the decoded tensors stay on the device and are shared by every trial.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from objectives.files import save_atomically
from objectives.paths import IMAGE_SUFFIXES, resolve_under
from objectives.splits import Fold, Split, make_folds, pixel_statistics


class DatasetError(RuntimeError):
    """The dataset is missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class Dataset:
    """The folds (one for a holdout or a refit, K for k-fold cross-validation: objectives.splits),
    the test split and the class names. ``train``, ``val``, ``mean`` and ``std`` are the first fold's.

    A fold's ``mean`` and ``std`` (``(1, 3, 1, 1)``): its training images' per-channel pixel
    statistics, in [0, 1] units, which a model trained on it standardises its inputs with.
    """

    folds: list[Fold]
    test: Split
    classes: list[str]

    @property
    def train(self) -> Split:
        """The first fold's training images."""
        return self.folds[0].train

    @property
    def val(self) -> Split:
        """The first fold's validation images."""
        return self.folds[0].val

    @property
    def mean(self) -> torch.Tensor:
        """The first fold's pixel means."""
        return self.folds[0].mean

    @property
    def std(self) -> torch.Tensor:
        """The first fold's pixel standard deviations."""
        return self.folds[0].std


_MEMORY: dict[tuple[str, str], tuple[Split, Split, list[str]]] = {}
# Pixel statistics of each fold of a selection of a dataset, computed once per process. (The
# folds themselves are cut afresh for each run, so that a process holds no split it is not using.)
_STATISTICS: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}


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
    the training images in all (both stratified and deterministic); ``validation`` (else a
    holdout of ``val_fraction``, default 0.1) says how the rest is split into folds of training
    and validation images (objectives.splits). The test split is returned whole (for the chosen
    classes).
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
    try:
        pairs = make_folds(train, dataset)
    except ValueError as exc:  # too few images per class for the folds asked for
        raise DatasetError(str(exc)) from None
    selection = json.dumps([*memo_key, classes, dataset], sort_keys=True, default=str)
    if selection not in _STATISTICS:
        _STATISTICS[selection] = [pixel_statistics(fit.images) for fit, _ in pairs]
    folds = [Fold(fit, val, *stats) for (fit, val), stats in zip(pairs, _STATISTICS[selection], strict=True)]
    return Dataset(folds=folds, test=test, classes=list(classes))


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
