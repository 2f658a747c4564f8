"""The models: the seed article's CNN (with its classifier shape bug fixed) and ResNet-18.

Four blocks of conv3x3-BN-ReLU-maxpool with 64/128/256/512 channels (scaled by ``width``),
then a linear classifier. Each block pools before its ReLU: the same function and the same
gradients (ReLU is monotonic, so it commutes with max-pooling), with the ReLU on a quarter
of the values (a training step about 8% faster on CPU, docs/benchmarks.md §1).

The article put ``Linear(512, 10)`` straight after the fourth pooling, which on 32x32 inputs
sees 512 x 2 x 2 = 2048 features and crashes; global average pooling before the classifier
fixes that for any input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from objectives.registry import get_objective
from objectives.shapes import channels_for


def build_cnn(*, width: float = 0.25, num_classes: int = 10) -> nn.Sequential:
    """The 4-block CNN at ``width``; accepts any input of at least 16 x 16 pixels."""
    layers: list[nn.Module] = []
    previous = 3  # RGB
    for channels in channels_for(width):
        layers += [
            nn.Conv2d(previous, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        ]
        previous = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, num_classes)]
    return nn.Sequential(*layers)


def build_resnet18(*, small_stem: bool = True, num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18; ``small_stem`` swaps ImageNet's 7x7 stride-2 stem and max-pooling
    for one 3x3 stride-1 convolution, which keeps 32x32 images from shrinking to 1x1 before the last stage."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    if small_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


@dataclass(frozen=True)
class Architecture:
    """How to build an objective's model, and its parts as fine-tuning sees them.

    ``blocks(model)``: the leading blocks ``freeze`` counts, input side first (objectives.registry
    gives their number, and the classifier head's state_dict prefix, which trains at the full
    learning rate).
    """

    build: Callable[[dict[str, Any], int], nn.Module]  # (params, number of classes) -> model
    blocks: Callable[[nn.Module], list[nn.Module]]


def _cnn_blocks(model: nn.Module) -> list[nn.Module]:
    assert isinstance(model, nn.Sequential)
    return [model[i : i + 4] for i in range(0, 16, 4)]  # conv-BN-pool-ReLU, four times


def _resnet_blocks(model: nn.Module) -> list[nn.Module]:
    parts = [model.get_submodule(name) for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")]
    return [nn.ModuleList(parts[:2]), *parts[2:]]  # the stem, then the four stages


# Adding an objective: its model here, its parameters in objectives/registry.py (OBJECTIVES), its
# weights' shapes in objectives/shapes.py.
ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture(
        build=lambda params, classes: build_cnn(width=params["width"], num_classes=classes),
        blocks=_cnn_blocks,
    ),
    "resnet18": Architecture(
        build=lambda params, classes: build_resnet18(small_stem=params["small_stem"], num_classes=classes),
        blocks=_resnet_blocks,
    ),
}


def build_model(objective: str, params: dict[str, Any], num_classes: int) -> nn.Module:
    """``objective``'s model (parameters not in ``params`` at their defaults), untrained.

    It carries the buffers ``input_mean`` and ``input_std``, which training sets to its
    dataset's pixel statistics: feed it ``normalise(model, images)``.
    """
    model = ARCHITECTURES[objective].build({**get_objective(objective).default_params(), **params}, num_classes)
    model.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
    model.register_buffer("input_std", torch.ones(1, 3, 1, 1))
    return model


def normalise(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, 3, H, W)`` as the model was trained on them: scaled to [0, 1] and standardised."""
    return (images.float() / 255 - model.get_buffer("input_mean")) / model.get_buffer("input_std")
