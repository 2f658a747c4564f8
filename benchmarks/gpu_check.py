"""The one prepared GPU check: smoke test, result quality, training throughput, packing, resume,
and EfficientNet-Lite0 fine-tuned from ImageNet.

Run it through ``scripts/gpu_check.sh`` (which finds the packages and data first). The sections
run in this order, the one worth most right after the smoke test, each within its budget
(BUDGET_SECONDS, 290 s in all); one that fails is reported and the others still run.

- smoke: ``worker --gpus 0 --trials-per-gpu 2`` on a small study; fails unless every trial completes.
- result_quality: the full-width CNN, one good config, on cifar10-full; its held-out test accuracy.
- throughput: the objectives loop against the seed article's DataLoader loop, widths 0.25 and
  1.0, on 20,000 cifar10-full images (each width warmed up first), so each timed run lasts seconds.
- packing: trials per hour of one study (full width, 20,000 images) with 1, 2 and 4 trials side by side.
- resume: a run killed after epoch 2 resumes from its checkpoint (CUDA generator state and fused
  optimizer state included) and ends close to the uninterrupted run.
- efficientnet: EfficientNet-Lite0 fine-tuned from its ImageNet weights at 128 px, every block
  training, on five classes of cifar10-full (benchmarks/gpu_transfer.py): images/s and test accuracy.

    python -m benchmarks.gpu_check [--dry-run] [--only SECTION ...] [--out DIR]

``--dry-run`` runs every section on the CPU at tiny sizes (``make test`` does, so the script
stays runnable where no GPU has been seen); it prints the GPU run's plan first all the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from benchmarks.gpu_sections import Check, packing, result_quality, resume, smoke, throughput
from benchmarks.gpu_transfer import efficientnet


@dataclass(frozen=True)
class Sizes:
    """How much each section does."""

    gpus: str  # the worker's --gpus
    train_dataset: str  # folder under HPO_DATA_DIR for throughput, packing and resume
    smoke_limit: int | None  # training images of the smoke study (bundled sample; None: all)
    smoke_trials: int
    smoke_epochs: int
    smoke_width: float
    throughput_limit: int
    throughput_epochs: int
    throughput_widths: tuple[float, ...]
    seed_workers: tuple[int, ...]  # DataLoader workers tried for the seed loop (the faster is the baseline)
    packing_limit: int
    packing_trials: int
    packing_epochs: int
    packing_width: float
    packing_slots: tuple[int, ...]
    quality_dataset: str  # folder under HPO_DATA_DIR
    quality_limit: int | None
    quality_epochs: int
    quality_width: float
    resume_limit: int
    resume_epochs: int
    lite0_dataset: str  # folder under HPO_DATA_DIR
    lite0_per_class: int  # training images of each of the five classes
    lite0_epochs: int
    lite0_image_size: int


GPU = Sizes(
    gpus="0",
    train_dataset="cifar10-full",
    smoke_limit=None,
    smoke_trials=4,
    smoke_epochs=6,
    smoke_width=1.0,
    throughput_limit=20_000,
    throughput_epochs=3,
    throughput_widths=(0.25, 1.0),
    seed_workers=(0, 8),
    packing_limit=20_000,
    packing_trials=8,
    packing_epochs=3,
    packing_width=1.0,
    packing_slots=(1, 2, 4),
    quality_dataset="cifar10-full",
    quality_limit=None,
    quality_epochs=16,
    quality_width=1.0,
    resume_limit=20_000,
    resume_epochs=4,
    lite0_dataset="cifar10-full",
    lite0_per_class=2_000,
    lite0_epochs=3,
    lite0_image_size=128,
)
DRY_RUN = replace(
    GPU,
    gpus="cpu",
    train_dataset="cifar10-sample",
    smoke_limit=200,
    smoke_trials=2,
    smoke_epochs=1,
    smoke_width=0.125,
    throughput_limit=256,
    throughput_epochs=1,
    throughput_widths=(0.125,),
    seed_workers=(0,),
    packing_limit=200,
    packing_trials=2,
    packing_epochs=1,
    packing_width=0.125,
    packing_slots=(1, 2),
    quality_dataset="cifar10-sample",
    quality_limit=300,
    quality_epochs=1,
    quality_width=0.125,
    resume_limit=300,
    resume_epochs=3,
    lite0_dataset="cifar10-sample",
    lite0_per_class=20,
    lite0_epochs=1,
    lite0_image_size=32,
)
# Seconds each section may take on the GPU (a worker run past its share is killed with its
# process group); 290 in all, so that the device call's timeout_s of 420 (start-up and copies
# included) leaves a second try inside a 15-minute lease. A dry run allows three times as much.
BUDGET_SECONDS = {
    "smoke": 70,
    "result_quality": 60,
    "throughput": 40,
    "packing": 80,
    "resume": 20,
    "efficientnet": 20,
}
SECTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "smoke": smoke,
    "result_quality": result_quality,
    "throughput": throughput,
    "packing": packing,
    "resume": resume,
    "efficientnet": efficientnet,
}


def plan(sizes: Sizes) -> list[str]:
    """What each section will do and may take, printed before it starts."""
    return [
        f"smoke (<= {BUDGET_SECONDS['smoke']} s): {sizes.smoke_trials} trials x {sizes.smoke_epochs} epochs, "
        f"width {sizes.smoke_width}, 2 per GPU, cifar10-sample",
        f"result_quality (<= {BUDGET_SECONDS['result_quality']} s): {sizes.quality_epochs} epochs, "
        f"width {sizes.quality_width}, {sizes.quality_dataset} ({sizes.quality_limit or 'all'} images)",
        f"throughput (<= {BUDGET_SECONDS['throughput']} s): widths {sizes.throughput_widths}, "
        f"{sizes.throughput_limit} {sizes.train_dataset} images x {sizes.throughput_epochs} epochs, each warmed up",
        f"packing (<= {BUDGET_SECONDS['packing']} s): {sizes.packing_trials} trials x {sizes.packing_epochs} epochs, "
        f"width {sizes.packing_width}, {sizes.packing_limit} images, {sizes.packing_slots} per GPU",
        f"resume (<= {BUDGET_SECONDS['resume']} s): killed after epoch 2 of {sizes.resume_epochs}, "
        f"{sizes.resume_limit} images",
        f"efficientnet (<= {BUDGET_SECONDS['efficientnet']} s): Lite0 from ImageNet, {sizes.lite0_image_size} px, "
        f"{sizes.lite0_epochs} epochs, {5 * sizes.lite0_per_class} {sizes.lite0_dataset} images of 5 classes",
        f"budget: {sum(BUDGET_SECONDS.values())} s of work",
    ]


def summary(results: dict[str, Any]) -> list[str]:
    """The lines to paste into docs/benchmarks.md."""
    lines = [f"gpu_check on {results['machine'].get('gpu', 'cpu (dry run)')}, torch {results['machine'].get('torch')}"]
    for name, section in results["sections"].items():
        if "error" in section:
            lines.append(f"{name}: FAILED after {section['seconds']:.0f} s: {section['error']}")
        elif name == "smoke":
            speeds = ", ".join(f"{r['images_per_second'] or 0:.0f}" for r in section["trials"])
            lines.append(
                f"smoke: {section['complete']} trials complete in {section['seconds']:.0f} s; "
                f"images/s per trial: {speeds}"
            )
        elif name == "throughput":
            for row in section["rows"]:
                lines.append(
                    f"throughput width {row['width']}: objectives {row['objectives_img_s']:.0f} images/s, "
                    f"seed loop {max(row['seed_img_s'].values()):.0f}, ratio {row['ratio']:.1f}"
                )
        elif name == "packing":
            per_hour = ", ".join(f"{r['trials_per_gpu']}/GPU {r['per_hour']:.0f}" for r in section["rows"])
            lines.append(f"packing trials per hour: {per_hour}; gain {section['gain_at_most_slots']:.2f}x")
        elif name == "result_quality":
            lines.append(
                f"result_quality: {section['epochs']} epochs, val {section['val_accuracy']:.4f}, "
                f"test {section['test_accuracy']:.4f}, {section['images_per_second']:.0f} images/s"
            )
        elif name == "efficientnet":
            size = section["params"]["image_size"]
            lines.append(
                f"efficientnet: Lite0 from ImageNet at {size} px, {section['epochs']} epochs, "
                f"{section['images_per_second']:.0f} images/s, val {section['val_accuracy']:.4f}, "
                f"test {section['test_accuracy']:.4f} ({section['test_images']} images)"
            )
        elif name == "resume":
            lines.append(
                f"resume: on {section['generator_device']}, val {section['resumed_val_accuracy']:.4f} resumed "
                f"vs {section['full_val_accuracy']:.4f} uninterrupted (bit-identical: {section['bit_identical']})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every section; write gpu_check.json under --out; print the summary. Exit 1 if one failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check-out")))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: OUT/work)")
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    args = parser.parse_args(argv)
    sizes = DRY_RUN if args.dry_run else GPU
    check = Check(sizes, args.work or args.out / "work", {"machine": machine(), "sizes": asdict(sizes), "sections": {}})
    check.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print("\n".join(["== plan (GPU sizes)", *plan(GPU)] + ([] if sizes is GPU else ["(dry run: tiny sizes on CPU)"])))
    for name in args.only or SECTIONS:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            section = SECTIONS[name](check)
        except Exception as exc:  # a failed section is reported; the others still run
            traceback.print_exc()
            section = {"error": f"{type(exc).__name__}: {exc}"}
        section["seconds"] = section.get("seconds", time.perf_counter() - started)
        check.results["sections"][name] = section
        (args.out / "gpu_check.json").write_text(json.dumps(check.results, indent=2, default=str) + "\n")
    lines = summary(check.results)
    print("\n".join(["", "== summary", *lines]))
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 1 if any("error" in s for s in check.results["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
