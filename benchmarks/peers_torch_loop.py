"""The trainable of system 4 of benchmarks/peers.py: a loop written as Ray's PyTorch CIFAR-10 example teaches.

Ray Tune's "Hyperparameter tuning with Ray Tune" tutorial trains with torchvision's per-image
transforms and a ``DataLoader``, SGD with momentum at a fixed learning rate, a validation pass
every epoch, and ``tune.report`` with a checkpoint (``torch.save`` of the model and optimizer)
every epoch. This is that loop, on the race's split (the same images as the other systems) and
the same CNN (objectives.model at the race's width). ``aug_strength`` is the probability of
the usual CIFAR augmentation (a random 4-pixel-padded crop and a horizontal flip); the
loader has one worker process, as many as the trial has CPUs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks.peers_faults import announce_trial_pid
from benchmarks.peers_race import Race


class ImageArrays(Dataset):
    """Images held as ``H x W x C`` uint8 arrays, each turned into a PIL image and transformed when read
    (what torchvision.datasets.CIFAR10 does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(np.ascontiguousarray(self.images[index]))), self.labels[index]


def accuracy(net: nn.Module, loader: DataLoader) -> float:
    """The share of ``loader``'s images that ``net`` classifies right."""
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, labels in loader:
            correct += (net(inputs).argmax(1) == labels).sum().item()
            total += labels.size(0)
    return correct / total


def train_like_the_ray_example(config: dict[str, Any], race_json: str) -> None:
    """Ray's function trainable: train, validate, report and checkpoint every epoch; the test accuracy at the end."""
    from ray import tune

    from objectives.data import load_dataset
    from objectives.model import build_model

    announce_trial_pid(tune.get_context().get_trial_id())
    race = Race.from_json(race_json)
    data = load_dataset(race.dataset, data_dir=race.data_root, cache_dir=race.cache_dir)
    mean, std = data.mean.flatten().tolist(), data.std.flatten().tolist()
    plain = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    augmented = transforms.Compose(
        [
            transforms.RandomApply(
                [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(p=1.0)], p=config["aug_strength"]
            ),
            plain,
        ]
    )
    batch = int(config["batch_size"])
    trainloader = DataLoader(
        ImageArrays(data.train.images, data.train.labels, augmented), batch_size=batch, shuffle=True, num_workers=1
    )
    valloader = DataLoader(ImageArrays(data.val.images, data.val.labels, plain), batch_size=256, num_workers=1)
    net = build_model("cnn", {"width": race.width}, len(data.classes))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / "checkpoint.pt", weights_only=True)
        net.load_state_dict(saved["net_state_dict"])
        optimizer.load_state_dict(saved["optimizer_state_dict"])
        start = saved["epoch"]
    for epoch in range(start, race.epochs):
        net.train()
        tick = time.perf_counter()
        for inputs, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(inputs), labels)
            loss.backward()
            optimizer.step()
        metrics = {"val_accuracy": accuracy(net, valloader), "train_s": time.perf_counter() - tick}
        if epoch + 1 == race.epochs:
            testloader = DataLoader(
                ImageArrays(data.test.images, data.test.labels, plain), batch_size=256, num_workers=1
            )
            metrics["test_accuracy"] = accuracy(net, testloader)
        with tempfile.TemporaryDirectory() as folder:
            state = {
                "epoch": epoch + 1,
                "net_state_dict": net.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
            }
            torch.save(state, Path(folder) / "checkpoint.pt")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
