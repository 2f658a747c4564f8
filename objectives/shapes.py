"""Each objective's weight shapes, computed without torch, and whether a file's tensors fit them.

The service checks a study's starting weights against its model before it accepts the study
(a 422 instead of trials that fail), and it does not import torch; the worker checks the same
way against the real model when it loads them (objectives.init.load_initial_weights).
tests/objectives/test_shapes.py holds these shapes equal to the models' state_dicts.

Adding an objective: a function here giving its backbone's shapes (every tensor but the
classifier head's), registered in ``BACKBONE_SHAPES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from objectives.registry import get_objective

Shapes = dict[str, tuple[int, ...]]

BASE_CHANNELS = (64, 128, 256, 512)
NORMALISATION = ("input_mean", "input_std")  # every model's buffers: its training set's per-channel pixel statistics


def channels_for(width: float) -> list[int]:
    """Channel counts of the CNN's four blocks at a width multiplier (at least 8 each)."""
    return [max(8, round(c * width)) for c in BASE_CHANNELS]


def _batchnorm(prefix: str, channels: int) -> Shapes:
    shapes: Shapes = {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}
    return {**shapes, f"{prefix}.num_batches_tracked": ()}


def cnn_shapes(params: dict[str, Any]) -> Shapes:
    """The 4-block CNN (objectives.model.build_cnn): conv, BatchNorm, ReLU and pooling per block."""
    shapes: Shapes = {}
    previous = 3
    for block, channels in enumerate(channels_for(params["width"])):
        shapes[f"{4 * block}.weight"] = (channels, previous, 3, 3)
        shapes |= _batchnorm(f"{4 * block + 1}", channels)
        previous = channels
    return shapes


def resnet18_shapes(params: dict[str, Any]) -> Shapes:
    """torchvision's ResNet-18: the stem, then four stages of two basic blocks."""
    stem = 3 if params["small_stem"] else 7
    shapes: Shapes = {"conv1.weight": (64, 3, stem, stem), **_batchnorm("bn1", 64)}
    previous = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (planes, previous, 3, 3)
            shapes |= _batchnorm(f"{prefix}.bn1", planes)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            shapes |= _batchnorm(f"{prefix}.bn2", planes)
            if block == 0 and stage > 1:  # the stage halves the resolution: its shortcut is a strided 1x1 conv
                shapes[f"{prefix}.downsample.0.weight"] = (planes, previous, 1, 1)
                shapes |= _batchnorm(f"{prefix}.downsample.1", planes)
            previous = planes
    return shapes


# EfficientNet-Lite0 (objectives.efficientnet): (repeats, kernel, stride, expansion, in, out) of each
# of its seven stages, as its reference names them ('r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...)
EFFICIENTNET_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
EFFICIENTNET_STEM, EFFICIENTNET_FEATURES = 32, 1280  # channels of the stem, and of the head convolution


def efficientnet_blocks() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, in, out) of each of EfficientNet-Lite0's 16 blocks, in order."""
    blocks = []
    for repeats, kernel, stride, expansion, channels_in, channels_out in EFFICIENTNET_STAGES:
        blocks.append((kernel, stride, expansion, channels_in, channels_out))
        blocks += [(kernel, 1, expansion, channels_out, channels_out)] * (repeats - 1)
    return blocks


def efficientnet_lite0_shapes(params: dict[str, Any]) -> Shapes:
    """EfficientNet-Lite0: the stem, 16 inverted-residual blocks, the head convolution."""
    shapes: Shapes = {"_conv_stem.weight": (EFFICIENTNET_STEM, 3, 3, 3), **_batchnorm("_bn0", EFFICIENTNET_STEM)}
    for index, (kernel, _, expansion, channels_in, channels_out) in enumerate(efficientnet_blocks()):
        prefix, hidden = f"_blocks.{index}", channels_in * expansion
        if expansion != 1:
            shapes[f"{prefix}._expand_conv.weight"] = (hidden, channels_in, 1, 1)
            shapes |= _batchnorm(f"{prefix}._bn0", hidden)
        shapes[f"{prefix}._depthwise_conv.weight"] = (hidden, 1, kernel, kernel)
        shapes |= _batchnorm(f"{prefix}._bn1", hidden)
        shapes[f"{prefix}._project_conv.weight"] = (channels_out, hidden, 1, 1)
        shapes |= _batchnorm(f"{prefix}._bn2", channels_out)
    last = EFFICIENTNET_STAGES[-1][-1]
    return {
        **shapes,
        "_conv_head.weight": (EFFICIENTNET_FEATURES, last, 1, 1),
        **_batchnorm("_bn1", EFFICIENTNET_FEATURES),
    }


BACKBONE_SHAPES: dict[str, Callable[[dict[str, Any]], Shapes]] = {
    "cnn": cnn_shapes,
    "resnet18": resnet18_shapes,
    "efficientnet_lite0": efficientnet_lite0_shapes,
}


def backbone_shapes(objective: str, params: dict[str, Any]) -> Shapes:
    """The shape of every tensor of ``objective``'s model but its classifier head's (parameters
    not in ``params`` at their defaults)."""
    return BACKBONE_SHAPES[objective]({**get_objective(objective).default_params(), **params})


def misfit(found: Shapes, backbone: Shapes, head: str, file_name: str) -> str | None:
    """Why tensors ``found`` in ``file_name`` cannot start a model of that ``backbone``; None if they can.

    The file's classifier head (names starting with ``head``) is never used, so it may have any shape.
    """
    unexpected = sorted(name for name in found if name not in backbone and not name.startswith(head))
    if unexpected:
        return f"{file_name} holds {unexpected[0]!r}, which this model lacks (another architecture?)"
    for name, shape in backbone.items():
        if name not in found:
            return f"{file_name} lacks {name!r} (another architecture?)"
        if found[name] != shape:
            return (
                f"{name!r} in {file_name} has shape {found[name]}, the model needs {shape} (a different width or stem?)"
            )
    return None
