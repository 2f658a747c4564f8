"""Candidate defaults for the search, judged on search_replay's recorded learning curves.

search_efficiency's goal (a median ratio of 5) is to be met "by better defaults (sampler start-up,
pruner resources, the default space), never by tuning the benchmark". A real run per candidate
is one draw of a wide distribution (15 minutes for three quick seeds); this replays each
candidate many times on the curve tables search_replay records (and caches) per seed, and
prints the median ratio and P(ratio >= 5) per seed beside the service's defaults and the
told-the-batch-size bound. Each candidate is a spec's sampler and pruner, built as a worker
builds them (service/spec/strategy.py).

    python -m benchmarks.search_candidates [--quick] [--seeds N] [--replays R]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import optuna

from benchmarks.common import save, table
from benchmarks.search_replay import Search, random_search, record, replay_ratios, spec_search, summary, told_batch

BOUND = "told the batch size (a bound)"


def candidates(quick: bool) -> dict[str, Search]:
    """The service's defaults, one change at a time, and two references."""
    changes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "defaults": ({}, {}),
        "TPE, 10 start-up trials": ({"n_startup_trials": 10}, {}),
        "TPE, 2 start-up trials": ({"n_startup_trials": 2}, {}),
        "TPE, independent": ({"multivariate": False}, {}),
        "Hyperband, reduction 2": ({}, {"name": "hyperband", "reduction_factor": 2}),
        "Hyperband, reduction 4": ({}, {"name": "hyperband", "reduction_factor": 4}),
        "Hyperband, min_resource 2": ({}, {"name": "hyperband", "min_resource": 2}),
        "successive halving": ({}, {"name": "successive_halving"}),
        "median pruner": ({}, {"name": "median"}),
        "no pruning": ({}, {"name": "none"}),
    }
    searches = {name: spec_search(sampler, pruner, quick) for name, (sampler, pruner) in changes.items()}
    return {**searches, "random + default pruner": random_search, BOUND: told_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="search_efficiency's --quick setting")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0, 1, ... (default 3; each recorded if not cached)")
    parser.add_argument("--replays", type=int, default=50, help="replays per candidate and seed (default 50)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        recorded = record(args.quick, seed)
        for name, search in candidates(args.quick).items():
            rows.append({"seed": seed, "candidate": name, **summary(replay_ratios(recorded, search, args.replays))})
            print(table([rows[-1]], list(rows[-1])), flush=True)
    print(table(rows, list(rows[0])))
    name = "search_candidates" + ("_quick" if args.quick else "")
    path = save(name, {"rows": rows, "replays": args.replays, "quick": args.quick})
    print(f"results: {path}")
    searches = {str(r["candidate"]) for r in rows} - {BOUND}  # the bound knows the answer: not a candidate
    best = max(searches, key=lambda c: statistics.median(_medians(rows, c)))
    print(f"search_candidates best median ratio: {best} {statistics.median(_medians(rows, best)):.1f}")


def _medians(rows: list[dict[str, Any]], candidate: str) -> list[float]:
    return [r["median_ratio"] for r in rows if r["candidate"] == candidate]


if __name__ == "__main__":
    main()
