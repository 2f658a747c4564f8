"""The models: the seed article's CNN (with its classifier shape bug fixed), ResNet-18 and
EfficientNet-Lite0 (objectives.efficientnet), each resizing its input to its ``image_size``.

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
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from objectives.efficientnet import EfficientNetLite0
from objectives.registry import get_objective
from objectives.shapes import EFFICIENTNET_STAGES, channels_for


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
    learning rate). ``features(model, x)``: what the classifier reads, for inputs already at the
    model's size; ``classifier(model)``: the head, the one layer after them (a frozen backbone's
    features are computed once: objectives.frozen_features).
    """

    build: Callable[[dict[str, Any], int], nn.Module]  # (params, number of classes) -> model
    blocks: Callable[[nn.Module], list[nn.Module]]
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    classifier: Callable[[nn.Module], nn.Module]


def _cnn_blocks(model: nn.Module) -> list[nn.Module]:
    assert isinstance(model, nn.Sequential)
    return [model[i : i + 4] for i in range(0, 16, 4)]  # conv-BN-pool-ReLU, four times


def _cnn_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert isinstance(model, nn.Sequential)
    return model[:-1](x)  # everything up to the classifier: blocks, global pooling, flattening


def _cnn_classifier(model: nn.Module) -> nn.Module:
    assert isinstance(model, nn.Sequential)
    return model[-1]


def _resnet_blocks(model: nn.Module) -> list[nn.Module]:
    parts = [model.get_submodule(name) for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")]
    return [nn.ModuleList(parts[:2]), *parts[2:]]  # the stem, then the four stages


def _resnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
        x = model.get_submodule(name)(x)
    return torch.flatten(x, 1)


def _efficientnet_blocks(model: nn.Module) -> list[nn.Module]:
    """The stem, the seven stages, the head convolution: what ``freeze`` counts."""
    assert isinstance(model, EfficientNetLite0)
    stem, head = nn.ModuleList([model._conv_stem, model._bn0]), nn.ModuleList([model._conv_head, model._bn1])
    stages, start = [], 0
    for repeats in (stage[0] for stage in EFFICIENTNET_STAGES):
        stages.append(model._blocks[start : start + repeats])
        start += repeats
    return [stem, *stages, head]


def _efficientnet_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert isinstance(model, EfficientNetLite0)
    return model.features(x)


# Adding an objective: its model here, its parameters in objectives/registry.py (OBJECTIVES), its
# weights' shapes in objectives/shapes.py.
ARCHITECTURES: dict[str, Architecture] = {
    "cnn": Architecture(
        build=lambda params, classes: build_cnn(width=params["width"], num_classes=classes),
        blocks=_cnn_blocks,
        features=_cnn_features,
        classifier=_cnn_classifier,
    ),
    "resnet18": Architecture(
        build=lambda params, classes: build_resnet18(small_stem=params["small_stem"], num_classes=classes),
        blocks=_resnet_blocks,
        features=_resnet_features,
        classifier=lambda model: model.get_submodule("fc"),
    ),
    "efficientnet_lite0": Architecture(
        build=lambda params, classes: EfficientNetLite0(num_classes=classes),
        blocks=_efficientnet_blocks,
        features=_efficientnet_features,
        classifier=lambda model: model.get_submodule("_fc"),
    ),
}


def build_model(objective: str, params: dict[str, Any], num_classes: int) -> nn.Module:
    """``objective``'s model (parameters not in ``params`` at their defaults), untrained.

    It carries the buffers ``input_mean`` and ``input_std``, which training sets to its
    dataset's pixel statistics (or to the scaling its pretrained weights expect): feed it
    ``normalise(model, images)``. It resizes its inputs to ``image_size`` (bilinear, on their device).
    """
    params = {**get_objective(objective).default_params(), **params}
    model = ARCHITECTURES[objective].build(params, num_classes)
    model.register_buffer("input_mean", torch.zeros(1, 3, 1, 1))
    model.register_buffer("input_std", torch.ones(1, 3, 1, 1))
    size = int(params["image_size"])
    vars(model)["image_size"] = size  # a plain attribute (evaluation sizes its passes by it), not a buffer
    model.register_forward_pre_hook(partial(_resize_input, size=size))
    return model


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """A float batch ``(N, C, H, W)`` resized to ``size`` x ``size`` (bilinear; unchanged at that size already)."""
    if images.shape[-2:] == (size, size):
        return images
    shrinking = size < min(images.shape[-2:])
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.contiguous(memory_format=torch.channels_last)


def _resize_input(module: nn.Module, args: tuple[Any, ...], *, size: int) -> tuple[Any, ...]:
    return (resize(args[0], size), *args[1:])


def normalise(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, 3, H, W)`` as the model was trained on them: scaled to [0, 1] and standardised."""
    return (images.float() / 255 - model.get_buffer("input_mean")) / model.get_buffer("input_std")
