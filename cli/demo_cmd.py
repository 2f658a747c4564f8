"""``hpo demo``: the whole system in one command on SQLite and the bundled CIFAR-10 sample.

It starts the API in this process, POSTs a study over HTTP, runs a local worker until the
budget is spent, shows progress, and prints the best config from GET /studies/{name}/best.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cli.errors import CliError
from cli.local_api import free_port, serve_in_thread
from service.settings import get_settings
from service.spec.schema import EXAMPLE_SPEC

# The API's example spec (what its OpenAPI schema shows), with a seeded TPE that starts sampling
# after 4 trials and Hyperband pruning.
DEMO_SPEC: dict[str, Any] = {
    **{key: value for key, value in EXAMPLE_SPEC.items() if key != "name"},
    "objective": "cnn",
    "sampler": {"name": "tpe", "n_startup_trials": 4, "seed": 0},
    "pruner": {"name": "hyperband"},
}


def add_parser(subparsers: Any) -> None:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="API + worker + study on SQLite and the bundled sample")
    parser.add_argument("--trials", type=int, default=DEMO_SPEC["max_trials"], help="the study's budget")
    parser.add_argument("--epochs", type=int, default=DEMO_SPEC["epochs"])
    parser.add_argument("--slots", type=int, default=2, help="worker processes side by side")
    parser.add_argument(
        "--config-out", type=Path, default=Path("demo-best.json"), help="where to write the best config"
    )
    parser.add_argument(
        "--report-out", type=Path, default=Path("demo-report.html"), help="where to write the study's report"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo end to end; returns the exit code."""
    settings = get_settings()
    if not (settings.data_dir / "cifar10-sample" / "train").is_dir():
        raise CliError(
            f"no cifar10-sample under HPO_DATA_DIR={settings.data_dir}; run from the repository root "
            "or set HPO_DATA_DIR to the folder holding it"
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve_in_thread(port)
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = {**DEMO_SPEC, "name": name, "max_trials": args.trials, "epochs": args.epochs}
    print(f"hpo demo: API at {base} on {settings.database_url}; data from {settings.data_dir}")
    with httpx.Client(base_url=base, timeout=60) as api:
        created = api.post("/studies", json=spec)
        if created.status_code != 201:
            raise CliError(f"POST /studies answered {created.status_code}: {created.text}")
        print(
            f"hpo demo: POST /studies -> 201, study {name!r}: {args.trials} trials x up to {args.epochs} epochs, "
            "TPE + Hyperband on the validation split"
        )
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "--gpus",
                "cpu" if not _has_cuda() else "all",
                "--trials-per-gpu",
                str(args.slots),
                "--study",
                name,
                "--burst",
            ],
            env={**os.environ, "HPO_DATABASE_URL": settings.database_url},
        )
        started = time.monotonic()
        bars = sys.stderr.isatty()  # the worker draws a bar per slot there; a line of ours would tear them
        finished = False
        while not finished:
            time.sleep(3)
            finished = worker.poll() is not None
            if finished or not bars:
                _print_progress(api.get(f"/studies/{name}").json(), time.monotonic() - started)
        best = api.get(f"/studies/{name}/best")
        report = api.get(f"/studies/{name}/report")
    server.should_exit = True
    if best.status_code != 200:
        raise CliError(f"GET /studies/{name}/best answered {best.status_code}: {best.text}")
    result = best.json()
    args.config_out.write_text(json.dumps(result["config"], indent=2) + "\n")
    print(f"\nGET /studies/{name}/best:\n{json.dumps(result, indent=2)}")
    if report.status_code == 200:
        args.report_out.write_text(report.text)
        print(f"\nthe study's report (GET /studies/{name}/report) written to {args.report_out}: open it in a browser")
    threads = result["metrics"].get("threads", 1)
    print(
        f"\nbest config written to {args.config_out}; reproduce it with:\n"
        f"  HPO_DATA_DIR={settings.data_dir} hpo train --config {args.config_out} --threads {threads}"
    )
    return 0


def _print_progress(study: dict[str, Any], elapsed: float) -> None:
    counts = study["counts"]
    best = study["best_value"]
    print(
        f"[{elapsed:5.0f}s] {study['finished']}/{study['max_trials']} finished "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed), "
        f"{counts['running']} running; best val_accuracy {best if best is None else round(best, 4)}; "
        f"status {study['status']}",
        flush=True,
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.device_count() > 0
