"""The seed article's CNN, with its classifier shape bug fixed.

Four blocks of conv3x3-BN-ReLU-maxpool with 64/128/256/512 channels (scaled by ``width``),
then a linear classifier. The article put ``Linear(512, 10)`` straight after the fourth
pooling, which on 32x32 inputs sees 512 x 2 x 2 = 2048 features and crashes; global average
pooling before the classifier fixes that for any input size.
"""

from __future__ import annotations

from torch import nn

BASE_CHANNELS = (64, 128, 256, 512)


def channels_for(width: float) -> list[int]:
    """Channel counts of the four blocks at a width multiplier (at least 8 each)."""
    return [max(8, round(c * width)) for c in BASE_CHANNELS]


def build_cnn(*, width: float = 0.25, num_classes: int = 10) -> nn.Sequential:
    """The 4-block CNN at ``width``; accepts any input of at least 16 x 16 pixels."""
    layers: list[nn.Module] = []
    previous = 3  # RGB
    for channels in channels_for(width):
        layers += [
            nn.Conv2d(previous, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        previous = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, num_classes)]
    return nn.Sequential(*layers)
