"""The ceiling of search_efficiency: how well a search that already knew where to look would do.

For each seed: the seed's grid (as in search_efficiency) sets the target; then K configs drawn
from the grid best's neighbourhood (batch 32, lr 2e-3 to 1e-2 log-uniform, aug_strength 0 to
0.2) are trained E epochs on 1 thread, as a worker does. Their curves are replayed as two
workers that draw only from them, without pruning, until one reports the target; the
per-seed figure is the median grid-epochs / oracle-epochs ratio over many replays.

    python -m benchmarks.search_oracle [--quick] [--seeds N] [--configs K]
"""

from __future__ import annotations

import argparse
import random
import statistics
from typing import Any

import torch

from benchmarks.common import data_dir, save, table
from benchmarks.search_efficiency import run_grid, setting
from objectives.data import load_dataset
from objectives.train import train

REPLAYS = 2000


def neighbourhood(seed: int, count: int) -> list[dict[str, Any]]:
    """``count`` configs near the grid's usual best (lr 3.16e-3, batch 32, aug 0)."""
    rng = random.Random(1000 + seed)
    return [
        {"lr": 10 ** rng.uniform(-2.7, -2.0), "batch_size": 32, "aug_strength": rng.uniform(0.0, 0.2)}
        for _ in range(count)
    ]


def curves(
    dataset: dict[str, Any], configs: list[dict[str, Any]], width: float, epochs: int, seed: int
) -> list[list[float]]:
    """Each config's validation accuracy after every epoch, trained on one thread like a worker."""
    data = load_dataset(dataset, data_dir=data_dir(), device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = []
        for config in configs:
            curve: list[float] = []
            params = {**config, "width": width}
            train(data, params=params, epochs=epochs, seed=seed, device="cpu", report=_appender(curve))
            result.append(curve)
        return result
    finally:
        torch.set_num_threads(threads)


def _appender(curve: list[float]) -> Any:
    return lambda _epoch, value: curve.append(value)


def replay(hit_epochs: list[int | None], epochs: int, rng: random.Random, workers: int = 2) -> int | None:
    """Epochs two lock-step workers spend, drawing runs from ``hit_epochs``, until one hits."""
    spent, position = 0, [0] * workers
    current = [rng.choice(hit_epochs) for _ in range(workers)]
    for _ in range(50 * epochs):
        for w in range(workers):
            position[w] += 1
            spent += 1
            if current[w] is not None and position[w] == current[w]:
                return spent
            if position[w] == epochs:
                current[w], position[w] = rng.choice(hit_epochs), 0
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, smaller data (about 2 minutes)")
    parser.add_argument("--seeds", type=int, help="how many seeds, 0, 1, ... (default 3, or 1 with --quick)")
    parser.add_argument("--configs", type=int, help="neighbourhood configs per seed (default 10)")
    args = parser.parse_args()
    dataset, width, epochs = setting(args.quick)
    seeds = range(args.seeds if args.seeds is not None else 1 if args.quick else 3)
    count = args.configs or 10
    rows = []
    for seed in seeds:
        grid = run_grid(dataset, width, epochs, seed)
        runs = curves(dataset, neighbourhood(seed, count), width, epochs, seed)
        hits = [next((e + 1 for e, v in enumerate(c) if v >= grid["best_val"]), None) for c in runs]
        rng = random.Random(seed)
        spent = [replay(hits, epochs, rng) for _ in range(REPLAYS)]
        ratios = [grid["epochs"] / s if s else 0.0 for s in spent]
        row = {
            "seed": seed,
            "grid_best_val": grid["best_val"],
            "reached": sum(h is not None for h in hits) / len(hits),
            "best_neighbour_val": max(max(c) for c in runs),
            "oracle_median_ratio": statistics.median(ratios),
        }
        rows.append(row)
        print(table([row], list(row)), flush=True)
    print(table(rows, list(rows[0])))
    headline = statistics.median(r["oracle_median_ratio"] for r in rows)
    path = save("search_oracle" + ("_quick" if args.quick else ""), {"rows": rows, "configs": count, "epochs": epochs})
    print(f"results: {path}")
    print(f"search_oracle ratio {headline:.1f}")


if __name__ == "__main__":
    main()
