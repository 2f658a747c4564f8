"""``worker --gpus 0,1 | all | cpu [--trials-per-gpu K] [--study NAME] [--burst] [--max-trials N]``.

The same command is ``hpo worker`` (cli/server_cmds.py registers these arguments and ``run``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from service.settings import SettingsError, get_settings
from worker.slots import plan_slots

DESCRIPTION = "Run trials of the studies in HPO_DATABASE_URL."


def build_parser() -> argparse.ArgumentParser:
    """The ``worker`` argument parser."""
    parser = argparse.ArgumentParser(prog="worker", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options, on ``parser`` (``worker`` itself, or ``hpo worker``)."""
    parser.add_argument(
        "--gpus", default=None, help="comma-separated GPU indices, 'all', or 'cpu' (default: all GPUs, else cpu)"
    )
    parser.add_argument(
        "--trials-per-gpu", type=int, default=1, metavar="K", help="trials run side by side on each GPU (or on the CPU)"
    )
    parser.add_argument("--study", default=None, help="serve only this study")
    parser.add_argument("--burst", action="store_true", help="exit once no work is left")
    parser.add_argument("--max-trials", type=int, default=None, metavar="N", help="run at most N trials, then exit")
    parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="wait between looks for work")
    parser.add_argument(
        "--plain", action="store_true", help="plain log lines even on a terminal (default there: a bar per slot)"
    )


def main(argv: list[str] | None = None) -> int:
    """The ``worker`` command; returns its exit code."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the worker with parsed arguments until it is done; returns its exit code."""
    warnings.filterwarnings("ignore", message=".*experimental.*")  # Optuna's heartbeat API is marked experimental
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [worker pid %(process)d] %(message)s")
    from worker.supervisor import Supervisor  # imported here: `hpo` loads this module for its parser alone

    try:
        get_settings()  # the children read them too: an invalid environment fails here, once, not in every child
        gpus = 0 if args.gpus == "cpu" else visible_gpu_count()
        slots = plan_slots(args, gpus, os.cpu_count() or 1, os.environ.get("CUDA_VISIBLE_DEVICES"))
    except (ValueError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("hpo.worker").info(
        "starting %s slot(s) on %s", len(slots), ", ".join(s.device + (s.cuda_visible or "") for s in slots)
    )
    return Supervisor(slots, args.max_trials, bars=sys.stderr.isatty() and not args.plain).run()


def visible_gpu_count() -> int:
    """The CUDA devices this process sees. Imports torch (1.5 s), so a CPU worker never asks:
    its children start that much sooner (benchmarks/peers.py)."""
    import torch  # device_count() asks NVML and leaves CUDA uninitialised in this parent

    return int(torch.cuda.device_count())


if __name__ == "__main__":
    sys.exit(main())
