"""Training images/s: the objectives loop against the seed article's loop.

The seed loop is the classic one: a torch DataLoader over a dataset that turns each image into
a PIL image and applies torchvision's per-image transforms (RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize). The objectives loop keeps the whole dataset as one
uint8 tensor on the device and augments whole batches with tensor ops. Same model, data,
batch size (128), optimizer and device. The seed loop is timed with 0 and 2 DataLoader
workers and the faster one is the baseline.

    python -m benchmarks.train_throughput [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from benchmarks.common import data_dir, save, table
from objectives.data import Dataset, load_dataset
from objectives.model import build_cnn
from objectives.train import train

BATCH = 128


class SeedDataset(torch.utils.data.Dataset):
    """CIFAR10-style: uint8 HWC arrays in memory, PIL + per-image transforms on every access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: transforms.Compose) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def seed_loop(
    data: Dataset, width: float, epochs: int, workers: int, device: torch.device, channels_last: bool = False
) -> float:
    """Images/s of the seed article's training loop (optionally with a channels_last model)."""
    mean = (data.train.images.float() / 255).mean((0, 2, 3)).tolist()
    std = (data.train.images.float() / 255).std((0, 2, 3)).tolist()
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    loader = DataLoader(
        SeedDataset(data.train.images.cpu(), data.train.labels.cpu(), transform),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_cnn(width=width, num_classes=len(data.classes)).to(device).to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, time.perf_counter()
    for _ in range(epochs):
        for inputs, labels in loader:
            inputs, labels = inputs.to(device, memory_format=layout), labels.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = criterion(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def objectives_loop(data: Dataset, width: float, epochs: int, device: torch.device) -> float:
    """Images/s of objectives.train (evaluation time excluded, as in the seed loop)."""
    result = train(
        data,
        params={"width": width, "batch_size": BATCH, "aug_strength": 0.5, "lr": 0.002},
        epochs=epochs,
        seed=0,
        device=device,
    )
    return result.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs (under 3 minutes on 2 CPUs)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    limit, epochs = (2000, 1) if args.quick else (3000, 2)
    if device.type == "cuda":
        limit, epochs = 10000, 3
    data = load_dataset(
        {"kind": "imagefolder", "path": "cifar10-sample", "limit": limit, "val_fraction": 0.1},
        data_dir=data_dir(),
        device=device,
    )
    objectives_loop(data, 0.25, 1, device)  # warm-up (allocator, kernels)
    rows = []
    for width in (0.25, 1.0):
        ours = objectives_loop(data, width, epochs, device)
        seeds = {workers: seed_loop(data, width, epochs, workers, device) for workers in (0, 2)}
        baseline_workers = max(seeds, key=lambda w: seeds[w])
        seed_cl = seed_loop(data, width, epochs, baseline_workers, device, channels_last=True)
        rows.append(
            {
                "device": device.type,
                "width": width,
                "images": len(data.train),
                "epochs": epochs,
                "objectives_img_s": ours,
                "seed_w0_img_s": seeds[0],
                "seed_w2_img_s": seeds[2],
                "seed_cl_img_s": seed_cl,  # the seed loop with a channels_last model: the data pipeline's share
                "ratio": ours / seeds[baseline_workers],
                "ratio_vs_seed_cl": ours / seed_cl,
            }
        )
    print(table(rows, list(rows[0])))
    headline = rows[0]["ratio"]
    path = save(
        "train_throughput" + ("_quick" if args.quick else ""),
        {"rows": rows, "headline_ratio": headline, "quick": args.quick},
    )
    print(f"results: {path}")
    print(f"train_throughput ratio {headline:.1f}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
