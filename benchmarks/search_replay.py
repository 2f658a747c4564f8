"""What any search can get on search_efficiency's task: many searches replayed on recorded learning curves.

search_efficiency runs one real search per seed, so its ratio is a single draw from a wide
distribution. This benchmark measures the distribution, and its ceiling:

1. Per seed, the grid of search_efficiency sets the target (same code, same threads): its best
   config's mean validation accuracy over 3 further training seeds.
2. A table of real learning curves is recorded once: 13 learning rates (quarter decades) x the
   4 batch sizes x 6 augmentation strengths, E epochs each, one thread per process as a worker
   trains. It is cached in benchmarks/results/curves/ (delete a file to record it again).
3. Each search is replayed many times: two simulated workers run Optuna in memory (the same
   per-trial sampler rebuild as worker.slot_loop); a trial's curve comes from the table and each epoch
   takes the time that config took. A config takes the curve of a random table cell next to it,
   fixed per config, so every distinct config is a fresh draw of the training noise, as in a
   real run, where nearby configs' final accuracies differ by a few points.

Searches: the service's defaults (built by service.spec.strategy from a spec), random search with the
default pruner, and two informed bounds that no real search has: random search told the grid
best's batch size, and random search told the grid best's neighbourhood.

    python -m benchmarks.search_replay [--quick] [--seeds N] [--replays R] [--target-fraction F]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import optuna
import torch

from benchmarks.common import RESULTS, cache_dir, save, shared_datasets, table
from benchmarks.search_efficiency import run_grid, setting
from objectives.config import TrainingConfig
from objectives.data import load_dataset
from objectives.train import train
from service.spec.schema import StudySpec
from service.spec.strategy import build_pruner, build_sampler, trial_seed

LRS = [float(10**x) for x in np.linspace(-4, -1, 13)]
BATCHES = [32, 64, 128, 256]  # search_efficiency's SPACE
AUGS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
GOAL = 5.0
CURVES_VERSION = (
    3  # 2: the grid's target is its best config retrained, eval_flip; 3: 1,000+ validation images of cifar10-full
)
Cell = tuple[int, int, int]  # (quarter decades of lr, batch size, fifths of aug_strength)
SamplerForSlot = Callable[[int], optuna.samplers.BaseSampler]
# a search: (replay index, epochs, grid best's config) -> the sampler for each trial slot, and the pruner
Search = Callable[[int, int, dict[str, Any]], tuple[SamplerForSlot, optuna.pruners.BasePruner]]


def cell_of(lr: float, batch: int, aug: float) -> Cell:
    """The table cell nearest to a config."""
    return round(math.log10(lr) * 4), int(batch), round(aug * 5)


def record(quick: bool, seed: int) -> dict[str, Any]:
    """The seed's grid target and its table of curves, from the cache or trained now.

    A cached table of another ``CURVES_VERSION`` (made by other training code) is recorded again.
    """
    path = RESULTS / "curves" / f"{'quick' if quick else 'full'}_{seed}.json"
    if path.exists() and (cached := json.loads(path.read_text())).get("version") == CURVES_VERSION:
        return dict(cached)
    dataset, width, epochs = setting(quick)
    grid = run_grid(dataset, width, epochs, seed)
    configs = list(itertools.product(LRS, BATCHES, AUGS))
    print(
        f"seed {seed}: grid best {grid['best_val']:.3f}, retrained {grid['target']:.3f}; "
        f"recording {len(configs)} configs x {epochs} epochs",
        flush=True,
    )
    with ProcessPoolExecutor(2, initializer=_load, initargs=(dataset,)) as pool:  # two 1-thread "workers"
        cells = list(pool.map(_curve, configs, *(itertools.repeat(x) for x in (width, epochs, seed))))
    recorded = {
        "version": CURVES_VERSION,
        "target": grid["target"],
        "grid_best_val": grid["best_val"],
        "grid_best": grid["best_config"],
        "epochs": epochs,
        "cells": cells,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded) + "\n")
    return recorded


_DATA: Any = None
_DATASET: dict[str, Any] = {}


def _load(dataset: dict[str, Any]) -> None:
    global _DATA
    torch.set_num_threads(1)
    _DATA = load_dataset(dataset, data_dir=shared_datasets(), device="cpu", cache_dir=cache_dir())
    _DATASET.update(dataset)


def _curve(config: tuple[float, int, float], width: float, epochs: int, seed: int) -> dict[str, Any]:
    lr, batch, aug = config
    curve: list[float] = []
    started = time.perf_counter()
    params = {"lr": lr, "batch_size": batch, "aug_strength": aug, "width": width, "eval_shift": False}  # a curve only
    run = TrainingConfig.model_validate({"dataset": _DATASET, "params": params, "epochs": epochs, "seed": seed})
    train(_DATA, run, device="cpu", report=lambda _e, v: curve.append(v))
    seconds = time.perf_counter() - started
    return {"lr": lr, "batch_size": batch, "aug_strength": aug, "curve": curve, "seconds": round(seconds, 3)}


def lookup(cells: dict[Cell, dict[str, Any]], lr: float, batch: int, aug: float) -> dict[str, Any]:
    """The recorded run of a random cell next to the config (the same cell every time for one config)."""
    i, b, j = cell_of(lr, batch, aug)
    near = [(i + di, b, j + dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (i + di, b, j + dj) in cells]
    return cells[random.Random(f"{lr:.12g},{batch},{aug:.12g}").choice(near)]


def replay(cells: dict[Cell, dict[str, Any]], search: Search, recorded: dict[str, Any], index: int) -> int | None:
    """Epochs two simulated workers spend until a trial reports the target (None: not in 60 trials)."""
    epochs, target, rng = recorded["epochs"], recorded["target"], random.Random(index)
    sampler_for, pruner = search(index, epochs, recorded["grid_best"])
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name=f"replay-{rng.random()}")
    running: list[tuple[float, float, optuna.Trial, list[float], int, float]] = []  # (epoch end, tie, trial, ...)
    slots, spent = 0, 0

    def start(now: float) -> None:
        nonlocal slots
        study.sampler = sampler_for(slots)  # rebuilt per trial, as worker.slot_loop does
        slots += 1
        trial = study.ask()
        run = lookup(
            cells,
            trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            trial.suggest_categorical("batch_size", BATCHES),
            trial.suggest_float("aug_strength", 0.0, 1.0),
        )
        per_epoch = run["seconds"] / epochs * rng.uniform(0.9, 1.1)
        heapq.heappush(running, (now + per_epoch, rng.random(), trial, run["curve"], 1, per_epoch))

    for _ in range(2):
        start(0.0)
    while running:
        now, _, trial, curve, step, per_epoch = heapq.heappop(running)
        spent += 1
        if curve[step - 1] >= target:
            return spent
        trial.report(curve[step - 1], step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif step == epochs:
            study.tell(trial, curve[step - 1])
        else:
            heapq.heappush(running, (now + per_epoch, rng.random(), trial, curve, step + 1, per_epoch))
            continue
        if slots < 60:
            start(now)
    return None


def cells_of(recorded: dict[str, Any]) -> dict[Cell, dict[str, Any]]:
    """A recorded table's runs by cell."""
    return {cell_of(c["lr"], c["batch_size"], c["aug_strength"]): c for c in recorded["cells"]}


def replay_ratios(recorded: dict[str, Any], search: Search, replays: int) -> list[float]:
    """The ratio (grid epochs / epochs to the target, 0 if never reached) of ``replays`` replays."""
    cells, grid_epochs = cells_of(recorded), 18 * recorded["epochs"]
    spent = [replay(cells, search, recorded, i) for i in range(replays)]
    return [grid_epochs / s if s else 0.0 for s in spent]


def summary(ratios: list[float]) -> dict[str, float]:
    """Median and mean ratio of some replays, and the share that reach the goal."""
    return {
        "median_ratio": statistics.median(ratios),
        "mean_ratio": statistics.mean(ratios),
        f"P(ratio>={GOAL:g})": sum(r >= GOAL for r in ratios) / len(ratios),
    }


def crossings(recorded: dict[str, Any]) -> dict[str, float]:
    """Where on the table the target is reached: the share of configs that reach it, the median
    epoch at which they first do, and the median rank (0 = best) of their first epoch's accuracy
    among all configs' (how well a one-epoch probe points at them)."""
    target, cells = recorded["target"], recorded["cells"]
    hits = [c for c in cells if max(c["curve"]) >= target]
    if not hits:
        return {"cells_reaching": 0.0, "first_crossing_epoch": math.nan, "epoch1_rank": math.nan}
    order = sorted(c["curve"][0] for c in cells)[::-1]
    first = [next(e + 1 for e, v in enumerate(c["curve"]) if v >= target) for c in hits]
    return {
        "cells_reaching": len(hits) / len(cells),
        "first_crossing_epoch": statistics.median(first),
        "epoch1_rank": statistics.median(order.index(c["curve"][0]) for c in hits),
    }


def spec_search(sampler: dict[str, Any], pruner: dict[str, Any], quick: bool = True) -> Search:
    """A search whose sampler and pruner are those of a spec with these ``sampler`` and ``pruner``
    entries (TPE options merge into the default TPE; the defaults' pruner when ``pruner`` is empty),
    built exactly as a worker builds them (service/spec/strategy.py)."""

    def search(index: int, epochs: int, _best: dict[str, Any]) -> Any:
        spec = _spec(index, epochs, sampler, pruner, quick)
        return (lambda slot: build_sampler(spec, slot)), build_pruner(spec)

    return search


def _spec(index: int, epochs: int, sampler: dict[str, Any], pruner: dict[str, Any], quick: bool) -> StudySpec:
    dataset, _, _ = setting(quick)
    return StudySpec.model_validate(
        {
            "name": "replay",
            "dataset": dataset,
            "epochs": epochs,
            "sampler": {"name": "tpe", **sampler, "seed": index},
            **({"pruner": pruner} if pruner else {}),
        }
    )


defaults: Search = spec_search({}, {})  # the service's default sampler and pruner


def random_search(index: int, epochs: int, _best: dict[str, Any]) -> Any:
    """Random search with the default pruner."""
    pruner = build_pruner(_spec(index, epochs, {}, {}, True))
    return (lambda slot: optuna.samplers.RandomSampler(seed=trial_seed(index, slot))), pruner


class Told(optuna.samplers.RandomSampler):
    """Random search confined to ranges it was told: a bound, not a strategy."""

    def __init__(self, seed: int, ranges: dict[str, Any]) -> None:
        super().__init__(seed=seed)
        self.ranges = ranges

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        """A value from the told range of ``name``, or anywhere in its distribution."""
        if name not in self.ranges:
            return super().sample_independent(study, trial, name, distribution)
        low, high = self.ranges[name]
        if name == "lr":
            return float(10 ** self._rng.rng.uniform(math.log10(low), math.log10(high)))
        return low if low == high else float(self._rng.rng.uniform(low, high))


def told_batch(index: int, _epochs: int, best: dict[str, Any]) -> Any:
    """Random search that knows the grid best's batch size; no pruning."""
    ranges = {"batch_size": (best["batch_size"], best["batch_size"])}
    return (lambda slot: Told(trial_seed(index, slot), ranges)), optuna.pruners.NopPruner()


def told_neighbourhood(index: int, _epochs: int, best: dict[str, Any]) -> Any:
    """Random search in the grid best's neighbourhood (its batch, lr /1.6 to x3.2, aug +-0.2); no pruning."""
    aug = best["aug_strength"]
    ranges = {
        "batch_size": (best["batch_size"], best["batch_size"]),
        "lr": (max(best["lr"] / 10**0.2, LRS[0]), min(best["lr"] * 10**0.5, LRS[-1])),  # within the table
        "aug_strength": (max(0.0, aug - 0.2), min(1.0, aug + 0.2)),
    }
    return (lambda slot: Told(trial_seed(index, slot), ranges)), optuna.pruners.NopPruner()


SEARCHES: dict[str, Search] = {
    "defaults": defaults,
    "random + default pruner": random_search,
    "told the batch size": told_batch,
    "told the neighbourhood": told_neighbourhood,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="search_efficiency's --quick setting, 1 seed")
    parser.add_argument("--seeds", type=int, help="how many seeds, 0, 1, ... (default 3, or 1 with --quick)")
    parser.add_argument("--replays", type=int, default=50, help="replays per search and seed (default 50)")
    parser.add_argument("--target-fraction", type=float, default=1.0, help="aim at this fraction of the grid's best")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seeds = range(args.seeds if args.seeds is not None else 1 if args.quick else 3)
    rows = []
    for seed in seeds:
        recorded = record(args.quick, seed)
        recorded["target"] *= args.target_fraction
        where = crossings(recorded)
        for name, search in SEARCHES.items():
            row = {"seed": seed, "target": recorded["target"], **where, "search": name}
            rows.append({**row, **summary(replay_ratios(recorded, search, args.replays))})
            print(table([rows[-1]], list(rows[-1])), flush=True)
    print(table(rows, list(rows[0])))
    name = "search_replay" + ("_quick" if args.quick else "") + ("" if args.target_fraction == 1 else "_fraction")
    path = save(name, {"rows": rows, "replays": args.replays, "target_fraction": args.target_fraction})
    print(f"results: {path}")
    median = {s: statistics.median(r["median_ratio"] for r in rows if r["search"] == s) for s in SEARCHES}
    print(
        f"search_replay median ratio: defaults {median['defaults']:.1f}, ceiling {median['told the neighbourhood']:.1f}"
    )


if __name__ == "__main__":
    main()
