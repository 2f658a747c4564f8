"""The one prepared GPU check: smoke test, training throughput, packing, result quality.

Run it through ``scripts/gpu_check.sh`` (which finds the packages and data first). Each section
runs on its own: one that fails is reported and the others still run, within the time budget.

- smoke: ``worker --gpus 0 --trials-per-gpu 2`` on a small study; images/s and accuracy per trial.
- throughput: the objectives loop against the seed article's DataLoader loop, widths 0.25 and 1.0.
- packing: trials per hour of one short study with 1, 2 and 4 trials side by side on the GPU.
- result_quality: the full-width CNN, one good config, on cifar10-full; its test accuracy.

    python -m benchmarks.gpu_check [--dry-run] [--only SECTION ...] [--out DIR]

``--dry-run`` runs every section on the CPU at tiny sizes (``make test`` does, so the script
stays runnable where no GPU has been seen).
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
from benchmarks.gpu_sections import Check, packing, result_quality, smoke, throughput


@dataclass(frozen=True)
class Sizes:
    """How much each section does."""

    gpus: str  # the worker's --gpus
    smoke_limit: int | None  # training images of the smoke and packing studies (None: all 10,000)
    smoke_trials: int
    smoke_epochs: int
    smoke_width: float
    throughput_limit: int
    throughput_epochs: int
    throughput_widths: tuple[float, ...]
    seed_workers: tuple[int, ...]  # DataLoader workers tried for the seed loop (the faster is the baseline)
    packing_trials: int
    packing_epochs: int
    packing_width: float
    packing_slots: tuple[int, ...]
    quality_dataset: str  # folder under HPO_DATA_DIR
    quality_limit: int | None
    quality_epochs: int
    quality_width: float
    worker_timeout: float  # seconds one worker run may take


GPU = Sizes(
    gpus="0",
    smoke_limit=None,
    smoke_trials=4,
    smoke_epochs=8,
    smoke_width=1.0,
    throughput_limit=10_000,
    throughput_epochs=3,
    throughput_widths=(0.25, 1.0),
    seed_workers=(0, 8),
    packing_trials=8,
    packing_epochs=3,
    packing_width=0.25,
    packing_slots=(1, 2, 4),
    quality_dataset="cifar10-full",
    quality_limit=None,
    quality_epochs=24,
    quality_width=1.0,
    worker_timeout=150,
)
DRY_RUN = replace(
    GPU,
    gpus="cpu",
    smoke_limit=200,
    smoke_trials=2,
    smoke_epochs=1,
    smoke_width=0.125,
    throughput_limit=256,
    throughput_epochs=1,
    throughput_widths=(0.125,),
    seed_workers=(0,),
    packing_trials=2,
    packing_epochs=1,
    packing_width=0.125,
    packing_slots=(1, 2),
    quality_dataset="cifar10-sample",
    quality_limit=300,
    quality_epochs=1,
    quality_width=0.125,
    worker_timeout=120,
)


SECTIONS: dict[str, Callable[[Check], dict[str, Any]]] = {
    "smoke": smoke,
    "throughput": throughput,
    "packing": packing,
    "result_quality": result_quality,
}


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
