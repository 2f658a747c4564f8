"""Accuracy of a trained model, or of several averaged (k-fold), on a split, optionally averaging
its predictions over a few views of each image (test-time augmentation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from objectives.splits import Split

EVAL_PIXELS = 1024 * 32 * 32  # pixels per forward pass when evaluating: 1,024 images of 32 x 32
Member = tuple[nn.Module, torch.Tensor, torch.Tensor]  # a model and the pixel statistics it was trained with
SHIFTS = ((1, 1), (-1, -1))  # with ``shift``: also the image moved a pixel down-right and up-left (reflect-padded)


def prepare(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images as a model takes them: standardised floats, channels last."""
    batch = (images.float().div_(255) - mean) / std
    return batch.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, mean: torch.Tensor, std: torch.Tensor, *, flip: bool = False, shift: bool = False
) -> float:
    """Top-1 accuracy of ``model`` on ``split`` (0.0 for an empty split).

    ``flip``: predict from the mean of the softmax over each image and its mirror image (+1.7 points
    of test accuracy for the width-0.25 CNN on cifar10-full, docs/benchmarks.md §6). ``shift``: over
    each image moved by a pixel both ways along the diagonal too (``SHIFTS``; with ``flip``, 6 views).
    """
    return evaluate_ensemble([(model, mean, std)], split, flip=flip, shift=shift)


@torch.no_grad()
def evaluate_ensemble(members: Sequence[Member], split: Split, *, flip: bool = False, shift: bool = False) -> float:
    """Top-1 accuracy on ``split`` of the members' averaged softmax (the k-fold models' test accuracy)."""
    return measure_ensemble(members, split, flip=flip, shift=shift)[0]


@torch.no_grad()
def measure_ensemble(
    members: Sequence[Member], split: Split, *, flip: bool = False, shift: bool = False
) -> tuple[float, float]:
    """Top-1 accuracy and cross-entropy loss on ``split`` of the members' softmax averaged over
    members and views ((0.0, 0.0) for an empty split)."""
    if len(split) == 0:
        return 0.0, 0.0
    device = split.images.device
    correct = torch.zeros((), device=device, dtype=torch.int64)
    loss = torch.zeros((), device=device)
    for model, _, _ in members:
        model.eval()
    batch = eval_batch(max(getattr(model, "image_size", 32) for model, _, _ in members))
    for start in range(0, len(split), batch):
        labels = split.labels[start : start + batch]
        scores = sum(
            _scores(model, split.images[start : start + batch], mean, std, flip, shift) for model, mean, std in members
        )
        assert isinstance(scores, torch.Tensor)
        correct += (scores.argmax(1) == labels).sum()
        loss += prediction_loss(scores, labels)
    return float(correct) / len(split), float(loss) / len(split)


def prediction_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The summed cross-entropy of predictions given as summed softmax scores (over members and
    views: normalised here into probabilities)."""
    probabilities = scores / scores.sum(1, keepdim=True)
    return -probabilities.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log().sum()


def eval_batch(image_size: int) -> int:
    """Images per forward pass when evaluating a model that takes ``image_size`` pixels square:
    as many as keep a pass at ``EVAL_PIXELS`` (at 160 px, 40 images; a pass of 1,024 held 14 GB)."""
    return max(1, EVAL_PIXELS // (image_size * image_size))


def view_names(flip: bool, shift: bool) -> list[str]:
    """The views of each image that evaluation averages over: ``plain``, the ``SHIFTS`` with ``shift``,
    and each of those mirrored (``flip:...``) with ``flip``."""
    names = ["plain", *(f"shift{dx},{dy}" for dx, dy in SHIFTS if shift)]
    return names + [f"flip:{name}" for name in names] if flip else names


def view(inputs: torch.Tensor, name: str) -> torch.Tensor:
    """The view ``name`` (one of ``view_names``) of a prepared batch."""
    mirrored, _, base = name.rpartition(":")
    if base.startswith("shift"):
        dx, dy = (int(n) for n in base.removeprefix("shift").split(","))
        inputs = _shifted(inputs, dx, dy)
    return inputs.flip(3) if mirrored else inputs


def _scores(
    model: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, flip: bool, shift: bool
) -> torch.Tensor:
    """The summed softmax over the views of each image."""
    inputs = prepare(images, mean, std)
    names = view_names(flip, shift)
    device = inputs.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        scores = model(view(inputs, names[0])).float().softmax(1)
        for name in names[1:]:
            scores += model(view(inputs, name)).float().softmax(1)
    return scores


def _shifted(inputs: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """The batch moved ``dx`` pixels right and ``dy`` down, the uncovered edge filled by reflection."""
    h, w = inputs.shape[-2:]
    padded = F.pad(inputs, (1, 1, 1, 1), mode="reflect")
    view = padded[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
    return view.contiguous(memory_format=torch.channels_last)
