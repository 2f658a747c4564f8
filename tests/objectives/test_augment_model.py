"""Batched augmentation and the CNN's shapes."""

from __future__ import annotations

import copy

import pytest
import torch

from objectives.augment import augment
from objectives.model import build_cnn
from objectives.shapes import channels_for


def _batch(small_data, n: int = 64) -> torch.Tensor:
    return small_data.train.images[:n].float() / 255


def test_strength_zero_is_identity(small_data):
    images = _batch(small_data)
    out = augment(images, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


def test_strength_one_changes_pixels_but_keeps_shape_dtype_and_labels(small_data):
    images = _batch(small_data)
    labels = small_data.train.labels[:64].clone()
    out = augment(images, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert not torch.equal(out, images)
    changed = (out != images).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # cutout alone is applied to every image at strength 1
    assert torch.equal(small_data.train.labels[:64], labels)


def test_same_generator_seed_gives_same_augmentation(small_data):
    images = _batch(small_data)
    a = augment(images, 0.7, torch.Generator().manual_seed(3))
    b = augment(images, 0.7, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_rejects_strength_outside_unit_interval(small_data):
    with pytest.raises(ValueError, match="aug_strength"):
        augment(_batch(small_data), 1.5, torch.Generator())


@pytest.mark.parametrize("size", [32, 48, 64])
def test_cnn_classifies_any_input_size(size):
    model = build_cnn(width=0.125, num_classes=10).eval()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)


def test_width_scales_channels():
    assert channels_for(1.0) == [64, 128, 256, 512]
    assert channels_for(0.25) == [16, 32, 64, 128]
    assert channels_for(0.01) == [8, 8, 8, 8]


def test_pooling_before_relu_is_the_article_s_block_with_the_same_gradients(small_data):
    """The CNN pools before its ReLU (cheaper); the article's conv-BN-ReLU-pool gives the same outputs and gradients."""
    torch.manual_seed(0)
    ours = build_cnn(width=0.125, num_classes=10)
    layers = list(copy.deepcopy(ours))
    for block in range(0, 16, 4):
        layers[block + 2], layers[block + 3] = layers[block + 3], layers[block + 2]
    article = torch.nn.Sequential(*layers)
    assert isinstance(article[2], torch.nn.ReLU) and isinstance(ours[2], torch.nn.MaxPool2d)
    images, labels = _batch(small_data, 32) - 0.5, small_data.train.labels[:32]
    for model in (ours, article):
        torch.nn.functional.cross_entropy(model(images), labels).backward()
    assert torch.equal(ours(images), article(images))
    for mine, theirs in zip(ours.parameters(), article.parameters(), strict=True):
        assert mine.grad is not None and torch.equal(mine.grad, theirs.grad)
