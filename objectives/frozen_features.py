"""A frozen backbone's features, computed once, for runs that train only the classifier head.

When ``freeze`` covers every block and the weights come from a file (``init``: pretrained, a
study, a file), the backbone is a fixed function: each epoch of the image loop would pay its
forward pass again for the same answer. Here each image's features (what the classifier reads)
are computed once per view, and the head trains on them. They are cached on disk in the data
cache (HPO_CACHE_DIR, beside the decoded datasets), under a key that digests everything they
depend on: the images, the starting weights' bytes, the objective and its shape, ``image_size``,
the input scaling, the view and the device kind. Every trial, and every worker process, that asks
for the same features reads them; a change in any input makes a new key.

Augmentation: pixel transforms cannot be applied to cached features. A head-only run keeps the
one transform that is a view of the whole image, the mirror image, with the same probability as
objectives.augment (0.5 x aug_strength), drawn from the two orientations' cached features;
translation and cutout do not apply. Evaluation averages the same views as the image loop
(objectives.evaluate.view_names), so ``eval_flip`` and ``eval_shift`` keep their meaning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives.checkpoint import TrainState
from objectives.evaluate import eval_batch, prediction_loss, prepare, view, view_names
from objectives.files import save_atomically
from objectives.model import ARCHITECTURES, resize
from objectives.optimization import run_epoch
from objectives.registry import get_objective
from objectives.splits import Split

_WEIGHT_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256 of the file, per process


def head_only(objective: str, hp: dict[str, Any], init_weights: str | Path | None) -> bool:
    """Whether a run trains the classifier head alone on a backbone that starts from a file."""
    return init_weights is not None and int(hp["freeze"]) >= get_objective(objective).blocks


class FrozenFeatures:
    """The features of images under one model's frozen backbone, each (split, view) computed at most once."""

    def __init__(
        self,
        model: nn.Module,
        objective: str,
        hp: dict[str, Any],
        weights: str | Path,
        scaling: tuple[torch.Tensor, torch.Tensor],
        cache_dir: str | Path | None,
    ) -> None:
        self.model, self.objective, self.size = model, objective, int(hp["image_size"])
        self.mean, self.std = scaling
        self.cache_dir = Path(cache_dir) / "features" if cache_dir is not None else None
        shape = {name: hp[name] for name in get_objective(objective).shape_params}
        device = self.mean.device.type
        self.key = json.dumps(
            [objective, shape, self.size, _file_digest(Path(weights)), self.mean.flatten().tolist(),
             self.std.flatten().tolist(), device]
        )  # fmt: skip
        self._memory: dict[tuple[int, str], torch.Tensor] = {}
        self.computed = 0  # (split, view) pairs this instance computed rather than read: tests check the cache

    def of(self, split: Split, view_name: str) -> torch.Tensor:
        """``(N, F)`` features of ``split``'s images seen as ``view_name`` (objectives.evaluate.view)."""
        memo = (id(split.images), view_name)
        if memo not in self._memory:
            self._memory[memo] = self._load_or_compute(split, view_name)
        return self._memory[memo]

    def _load_or_compute(self, split: Split, view_name: str) -> torch.Tensor:
        images = split.images
        digest = hashlib.sha256(f"{self.key}|{view_name}|{tuple(images.shape)}".encode())
        digest.update(images.cpu().numpy().tobytes())
        path = self.cache_dir / f"{digest.hexdigest()[:32]}.pt" if self.cache_dir is not None else None
        if path is not None and path.exists():
            return torch.load(path, map_location=images.device, weights_only=True)
        features = self._compute(images, view_name)
        self.computed += 1
        if path is not None:
            save_atomically(features.cpu(), path)
        return features

    @torch.no_grad()
    def _compute(self, images: torch.Tensor, view_name: str) -> torch.Tensor:
        self.model.eval()
        extract, device = ARCHITECTURES[self.objective].features, images.device
        parts, batch = [], eval_batch(self.size)
        for start in range(0, len(images), batch):
            inputs = resize(view(prepare(images[start : start + batch], self.mean, self.std), view_name), self.size)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                parts.append(extract(self.model, inputs).float())
        return torch.cat(parts) if parts else torch.zeros(0, device=device)

    def train_epoch(self, state: TrainState, split: Split, hp: dict[str, Any]) -> float:
        """One epoch of the classifier head on ``split``'s features; the mean training loss."""
        head = ARCHITECTURES[self.objective].classifier(state.model)
        head.train()
        plain = self.of(split, "plain")
        flip_probability = 0.5 * float(hp["aug_strength"])
        mirrored = self.of(split, "flip:plain") if flip_probability > 0 else None
        generator = state.generator

        def batch(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            inputs = plain[index]
            if mirrored is not None:
                chosen = torch.rand(len(index), generator=generator, device=generator.device).to(inputs.device)
                inputs = torch.where((chosen < flip_probability).unsqueeze(1), mirrored[index], inputs)
            return inputs, split.labels[index]

        return run_epoch(state, len(split), hp, batch, head, plain.device)


@torch.no_grad()
def feature_accuracy(
    members: Sequence[tuple[nn.Module, FrozenFeatures]], split: Split, *, flip: bool, shift: bool
) -> float:
    """Top-1 accuracy on ``split`` of the members' softmax averaged over the evaluation views (as
    objectives.evaluate.evaluate_ensemble, on cached features)."""
    return feature_measures(members, split, flip=flip, shift=shift)[0]


@torch.no_grad()
def feature_measures(
    members: Sequence[tuple[nn.Module, FrozenFeatures]], split: Split, *, flip: bool, shift: bool
) -> tuple[float, float]:
    """Top-1 accuracy and cross-entropy loss on ``split`` (as objectives.evaluate.measure_ensemble, on
    cached features)."""
    if len(split) == 0:
        return 0.0, 0.0
    scores = torch.zeros((), device=split.labels.device)
    for model, features in members:
        head = ARCHITECTURES[features.objective].classifier(model)
        head.eval()
        for name in view_names(flip, shift):
            scores = scores + head(features.of(split, name)).float().softmax(1)
    accuracy = float((scores.argmax(1) == split.labels).sum()) / len(split)
    return accuracy, float(prediction_loss(scores, split.labels)) / len(split)


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _WEIGHT_DIGESTS:
        _WEIGHT_DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _WEIGHT_DIGESTS[key]
