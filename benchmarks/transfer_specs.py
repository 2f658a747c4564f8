"""The studies benchmarks/transfer.py compares, for each source of starting weights.

- ``imagenet``: ``finetune`` starts from EfficientNet-Lite0's ImageNet weights (the catalogue's
  ``efficientnet_lite0.imagenet``) and searches ``lr``, ``freeze``, ``image_size`` and
  ``backbone_lr_scale``; ``scratch`` searches the CNN's ``lr`` and ``aug_strength`` from random
  weights. Both on dog, frog, horse, ship and truck, 30 images each (the issue's setting), as
  examples/transfer/imagenet-*.yaml.
- ``cifar``: ``pretrain`` trains the CNN on airplane, automobile, bird, cat and deer (all their
  images); ``finetune`` starts from its best trial, on the five other classes with 50 images
  each, ``freeze`` and ``backbone_lr_scale`` searched; ``scratch`` is the same search from random weights.

The pair of a source shares images, trials, epochs, sampler and pruner.
"""

from __future__ import annotations

from typing import Any

PRETRAIN_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET_CLASSES = ["dog", "frog", "horse", "ship", "truck"]
LR = {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}
CIFAR_SEARCHED = {  # width is fixed so that the pretrained weights fit
    "lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
    "width": 0.25,
}
CIFAR_TRANSFER = {
    "freeze": {"type": "categorical", "choices": [0, 2, 3, 4]},
    "backbone_lr_scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
}
IMAGENET_FINETUNE = {
    "lr": LR,
    "freeze": {"type": "categorical", "choices": [5, 7, 9]},  # 9: the classifier alone
    "image_size": {"type": "categorical", "choices": [64, 96, 128, 160]},
    "backbone_lr_scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
    "batch_size": 32,
}
IMAGENET_SCRATCH = {
    "lr": LR,
    "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
    "width": 0.25,
    "batch_size": 32,
}


def pretrain_spec(path: str, epochs: int, trials: int) -> dict[str, Any]:
    """The CIFAR source task: five classes, every training image of the dataset."""
    return {
        "name": "pretrain",
        "dataset": {"kind": "imagefolder", "path": path, "classes": PRETRAIN_CLASSES},
        "search_space": {"width": 0.25},
        "epochs": epochs,
        "max_trials": trials,
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2},
        "pruner": {"name": "none"},
        "enqueue": [{"lr": 0.004, "batch_size": 128, "aug_strength": 0.5}],
    }


def small_spec(source: str, path: str, name: str, epochs: int, trials: int, transfer: bool) -> dict[str, Any]:
    """The target task, fine-tuned (``transfer``) or from scratch; otherwise identical."""
    imagenet = source == "imagenet"
    if imagenet:
        space = IMAGENET_FINETUNE if transfer else IMAGENET_SCRATCH
    else:
        space = {**CIFAR_SEARCHED, **(CIFAR_TRANSFER if transfer else {})}
    spec: dict[str, Any] = {
        "name": name,
        "objective": "efficientnet_lite0" if imagenet and transfer else "cnn",
        "dataset": {
            "kind": "imagefolder",
            "path": path,
            "classes": TARGET_CLASSES,
            "per_class": 30 if imagenet else 50,
            "val_fraction": 0.2,
        },
        "search_space": space,
        "epochs": epochs,
        "max_trials": trials,
        "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 4},
        "pruner": {"name": "hyperband", "min_resource": 2, "reduction_factor": 3},
    }
    if transfer:
        weights = "efficientnet_lite0.imagenet"
        spec["init"] = (
            {"kind": "pretrained", "weights": weights} if imagenet else {"kind": "study", "study": "pretrain"}
        )
    return spec
