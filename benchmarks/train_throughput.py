"""Training images/s: the objectives loop against the seed article's loop.

The seed loop is the classic one: a torch DataLoader over a dataset that turns each image into
a PIL image and applies torchvision's per-image transforms (RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize). The objectives loop keeps the whole dataset as one
uint8 tensor on the device and augments whole batches with tensor ops. Same model, data,
batch size (128), optimizer and device.

Timing holds still on a busy machine: both sides are warmed up first (allocator, oneDNN's
first-call kernel creation, DataLoader workers), then timed in interleaved rounds (objectives,
then the seed loop with 0 and with 2 loader workers), so that a neighbour's load falls on
both. Each round's ratio is against the seed's faster setting in that round (which one wins
depends on the load); the headline is the median of the rounds' ratios, with their spread.

    python -m benchmarks.train_throughput [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from benchmarks.common import data_dir, save, table
from objectives.config import TrainingConfig
from objectives.data import Dataset, load_dataset
from objectives.model import build_cnn
from objectives.train import train

BATCH = 128
LOADER_WORKERS = (0, 2)  # the seed's DataLoader settings; its faster one in each round is the baseline
DATASET = {"kind": "imagefolder", "path": "cifar10-sample"}  # with a limit (below)


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


def seed_loop(data: Dataset, width: float, epochs: int, workers: int, device: torch.device) -> float:
    """Images/s of the seed article's training loop."""
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
    model = build_cnn(width=width, num_classes=len(data.classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, time.perf_counter()
    for _ in range(epochs):
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
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
    params = {"width": width, "batch_size": BATCH, "aug_strength": 0.5, "lr": 0.002}
    config = TrainingConfig.model_validate({"dataset": DATASET, "params": params, "epochs": epochs})
    result = train(data, config, device=device)
    return result.images_per_second


def timed_rounds(data: Dataset, width: float, epochs: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Warm both sides up, then time ``repeats`` interleaved rounds: objectives, then the seed loop
    with each of LOADER_WORKERS. A round's ratio is against the seed's faster setting in that round."""
    objectives_loop(data, width, 1, device)
    for workers in LOADER_WORKERS:
        seed_loop(data, width, 1, workers, device)
    ours, seeds, best_workers = [], [], []
    for _ in range(repeats):
        ours.append(objectives_loop(data, width, epochs, device))
        by_workers = {workers: seed_loop(data, width, epochs, workers, device) for workers in LOADER_WORKERS}
        workers = max(by_workers, key=lambda w: by_workers[w])
        seeds.append(by_workers[workers])
        best_workers.append(workers)
    ratios = sorted(o / s for o, s in zip(ours, seeds, strict=True))
    return {
        "width": width,
        "objectives_img_s": statistics.median(ours),
        "seed_img_s": statistics.median(seeds),
        "seed_workers": " ".join(f"{w}x{best_workers.count(w)}" for w in LOADER_WORKERS),
        "median_ratio": statistics.median(ratios),
        "min_ratio": ratios[0],
        "max_ratio": ratios[-1],
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (about 2 minutes on 2 CPUs)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    limit, epochs, repeats = (2000, 1, 5) if args.quick else (3000, 2, 7)
    if device.type == "cuda":
        limit, epochs = 10000, 3
    data = load_dataset(
        {**DATASET, "limit": limit, "val_fraction": 0.1},
        data_dir=data_dir(),
        device=device,
    )
    rows = [
        {
            "device": device.type,
            "images": len(data.train),
            "epochs": epochs,
            **timed_rounds(data, w, epochs, repeats, device),
        }
        for w in (0.25, 1.0)
    ]
    columns = ["device", "width", "images", "epochs", "objectives_img_s", "seed_img_s", "seed_workers"]
    print(table(rows, [*columns, "median_ratio", "min_ratio", "max_ratio"]))
    headline = rows[0]
    path = save(
        "train_throughput" + ("_quick" if args.quick else ""),
        {"rows": rows, "headline_ratio": headline["median_ratio"], "repeats": repeats, "quick": args.quick},
    )
    print(f"results: {path}")
    print(
        f"train_throughput median ratio {headline['median_ratio']:.2f} "
        f"({headline['min_ratio']:.2f}-{headline['max_ratio']:.2f} over {repeats} rounds, width 0.25)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
