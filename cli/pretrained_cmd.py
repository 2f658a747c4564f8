"""``hpo pretrained``: the published weights a study can start from, and whether this machine has them.

It reads this installation's catalogue (objectives.pretrained), so run it where the workers run:
they load the files. ``GET /pretrained`` answers the same for the API's machine.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from objectives.pretrained import CATALOGUE


def add_parser(subparsers: Any) -> None:
    """Register the ``pretrained`` subcommand."""
    parser = subparsers.add_parser("pretrained", help="the catalogue of pretrained weights and what is installed here")
    parser.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    parser.set_defaults(run=run_pretrained)


def run_pretrained(args: argparse.Namespace) -> int:
    """Print the catalogue: a table for people, JSON (with each file's source) with ``--json``."""
    entries = [entry.describe() for entry in CATALOGUE.values()]
    if args.json:
        print(json.dumps(entries))
        return 0
    console = Console(highlight=False)
    for entry in entries:
        size = entry["file_bytes"]
        where = f"installed ({size / 1e6:.1f} MB)" if size is not None else "not installed"
        console.print(f"[bold]{entry['name']}[/bold]  objective {entry['objective']}, {where}")
        console.print(f"    input scaling: {entry['input_scaling']['formula']}")
        console.print(f"    from: {entry['source']}")
    console.print('Start a study from one with  init: {"kind": "pretrained", "weights": NAME}')
    return 0
