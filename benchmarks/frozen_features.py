"""Frozen features computed once: how much faster is a head-only trial (``freeze`` = every block,
from EfficientNet-Lite0's ImageNet weights) when its backbone's features are cached, and does it
reach the same test accuracy?

Three runs of the same config (objectives.train.train, 1 CPU thread, as one worker slot runs it):

1. ``images``: the whole frozen network runs forward every epoch (``reuse_features=False``), with
   the full augmentation;
2. ``first``: features computed once into an empty cache, then the head trains on them;
3. ``cached``: the same config again, reading the cache (every later trial of a study).

Per run: the median epoch (training and the epoch's validation), the first epoch (where the
features are computed), the whole run, and the test accuracy. It ends with
``frozen_features epoch_speedup X`` = images' median epoch / cached median epoch (goal: X >= 10)
and ``trial_speedup`` (whole runs, including the final evaluation).

    python -m benchmarks.frozen_features [--quick] [--image-size 128]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import REPO, save, table
from objectives.config import TrainingConfig
from objectives.data import load_dataset
from objectives.pretrained import pretrained_file
from objectives.train import train

CLASSES = ["dog", "frog", "horse", "ship", "truck"]


def config(image_size: int, per_class: int, epochs: int) -> TrainingConfig:
    """A head-only fine-tune from ImageNet on five classes of the bundled sample."""
    dataset = {
        "kind": "imagefolder",
        "path": "cifar10-sample",
        "classes": CLASSES,
        "per_class": per_class,
        "val_fraction": 0.2,
    }
    params = {"freeze": 9, "image_size": image_size, "lr": 0.01, "batch_size": 32, "aug_strength": 0.5}
    init = {"kind": "pretrained", "weights": "efficientnet_lite0.imagenet"}
    fields = {"objective": "efficientnet_lite0", "dataset": dataset, "epochs": epochs, "params": params, "init": init}
    return TrainingConfig.model_validate(fields)


def timed_run(cfg: TrainingConfig, cache: Path, reuse: bool) -> dict[str, Any]:
    """One run: each epoch's seconds, the whole run's, and the test accuracy."""
    data = load_dataset(cfg.dataset.model_dump(), data_dir=REPO / "data")
    ticks = [time.perf_counter()]
    result = train(
        data,
        cfg,
        device="cpu",
        init_weights=pretrained_file("efficientnet_lite0.imagenet"),
        cache_dir=cache,
        reuse_features=reuse,
        on_epoch=lambda *_: ticks.append(time.perf_counter()),
    )
    epochs = [b - a for a, b in itertools.pairwise(ticks)]
    return {
        "first_epoch_s": epochs[0],
        "median_epoch_s": statistics.median(epochs[1:]),
        "run_s": result.seconds,
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_images": len(data.train),
        "test_images": len(data.test),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 images per class, 10 epochs (else 200 and 15)")
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_class, epochs = (30, 10) if args.quick else (200, 15)
    cfg = config(args.image_size, per_class, epochs)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-features.") as tmp:
        for name, reuse in (("images", False), ("first", True), ("cached", True)):
            runs[name] = timed_run(cfg, Path(tmp), reuse)
            print(f"{name}: {runs[name]}", flush=True)
    epoch_speedup = runs["images"]["median_epoch_s"] / runs["cached"]["median_epoch_s"]
    trial_speedup = runs["images"]["run_s"] / runs["cached"]["run_s"]
    payload = {
        "quick": args.quick,
        "config": cfg.model_dump(mode="json"),
        "runs": runs,
        "epoch_speedup": epoch_speedup,
        "trial_speedup": trial_speedup,
    }
    path = save("frozen_features" + ("_quick" if args.quick else ""), payload)
    rows = [{"run": name, **{k: v for k, v in run.items() if not k.endswith("images")}} for name, run in runs.items()]
    print(table(rows, list(rows[0])))
    print(f"results: {path}")
    print(f"frozen_features epoch_speedup {epoch_speedup:.1f} trial_speedup {trial_speedup:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
