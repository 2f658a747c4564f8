"""Batched data augmentation with one knob, ``aug_strength`` in [0, 1].

The whole mapping from the knob to the transforms is here:

| transform               | at strength s                         | at s = 1            |
| ----------------------- | ------------------------------------- | ------------------- |
| random translation      | up to round(4 * s) pixels each axis,  | 4 px (the seed      |
|                         | reflect-padded (RandomCrop + padding) | article's padding=4)|
| horizontal flip         | with probability 0.5 * s              | 0.5                 |
| cutout (one zeroed box) | side round(12 * s) pixels, p = s      | 12 x 12, always     |

At s = 0 every transform is off and the batch is returned unchanged. All randomness comes
from the ``generator`` argument, so a run is reproducible and resumable. Everything works on
whole batches with tensor ops on the batch's device: no per-image Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_SHIFT = 4  # pixels of translation at strength 1
MAX_CUTOUT = 12  # side in pixels of the cutout box at strength 1


def augment(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)``; returns a new tensor of the same shape and dtype."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"aug_strength must lie in [0, 1], got {strength}")
    if strength == 0.0:
        return images
    images = _translate(images, round(MAX_SHIFT * strength), generator)
    images = _flip(images, 0.5 * strength, generator)
    return _cutout(images, round(MAX_CUTOUT * strength), strength, generator)


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def _translate(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift), mode="reflect")
    offsets = (_rand(2 * b, generator, images.device) * (2 * shift + 1)).long().view(2, b)
    rows = offsets[0].view(b, 1) + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[1].view(b, 1) + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    # advanced indexing over (batch, row, col) with channels sliced: result is (B, H, W, C)
    shifted = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
    return shifted.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _flip(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    chosen = _rand(images.shape[0], generator, images.device) < probability
    return torch.where(chosen.view(-1, 1, 1, 1), images.flip(3), images)


def _cutout(images: torch.Tensor, size: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    if size == 0:
        return images
    b, _, h, w = images.shape
    draws = _rand(3 * b, generator, images.device).view(3, b)
    top = (draws[0] * (h - size + 1)).long().view(b, 1, 1)
    left = (draws[1] * (w - size + 1)).long().view(b, 1, 1)
    applied = (draws[2] < probability).view(b, 1, 1)
    ys = torch.arange(h, device=images.device).view(1, h, 1)
    xs = torch.arange(w, device=images.device).view(1, 1, w)
    box = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size) & applied
    return images.masked_fill(box.unsqueeze(1), 0.0)
