"""``hpo study create FILE | list | show | trials | best | export | report | compare | patch | pause | resume | stop
| delete``:
the API for people.

Reads HPO_API_URL and HPO_API_TOKEN. Tables for people by default, ``--json`` for scripts.
An error answer prints the API's message and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from cli.api_client import download, request
from cli.errors import CliError
from cli.study_views import print_best, print_studies, trials_table

STATUS_ACTIONS = ("pause", "resume", "stop")


def add_parser(subparsers: Any) -> None:
    """Register ``study`` and its subcommands, each with its own handler."""
    study = subparsers.add_parser("study", help="create and manage studies through the API")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    _command(commands, "create", run_create, "create a study from a YAML or JSON spec").add_argument("file", type=Path)
    _command(commands, "list", run_list, "every study with progress")
    _command(commands, "show", run_show, "one study with progress").add_argument("name")
    trials = _command(commands, "trials", run_trials, "a study's trials: state, value, epochs, why failed ones failed")
    trials.add_argument("name")
    trials.add_argument("--offset", type=int, default=0)
    trials.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    best = _command(commands, "best", run_best, "the best trial and its config")
    best.add_argument("name")
    best.add_argument("--config-out", type=Path, help="write the config that `hpo train --config` reproduces")
    best.add_argument("--download", type=Path, metavar="FILE", help="save the best trial's weights (a state_dict)")
    best.add_argument(
        "--refit",
        action="store_true",
        help="train the best config here on all its training images (with --download: save those weights instead)",
    )
    export = _command(commands, "export", run_export, "every trial as CSV or JSON lines, streamed into a file")
    export.add_argument("name")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("-o", "--output", type=Path, required=True, help="the file to write (whole or not at all)")
    report = _command(commands, "report", run_report, "the study's report: a self-contained HTML page")
    report.add_argument("name")
    report.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    compare = _command(commands, "compare", run_compare, "2 to 8 studies side by side: a self-contained HTML page")
    compare.add_argument("names", nargs="+", metavar="NAME")
    compare.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    patch = _command(commands, "patch", run_patch, "change a study's max_trials or stopping rules")
    patch.add_argument("name")
    patch.add_argument("--max-trials", type=int, help="the new budget (not below the trials started or queued)")
    patch.add_argument(
        "--stop-when", metavar="JSON", help='the stopping rules, e.g. \'{"target": 0.7}\'; "null" removes them'
    )
    for action in STATUS_ACTIONS:
        _command(commands, action, run_status_change, f"{action} a study").add_argument("name")
    _command(commands, "delete", run_delete, "delete a study and its trials").add_argument("name")


def _command(commands: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    parser.set_defaults(run=handler)
    return parser


def run_create(args: argparse.Namespace) -> int:
    """POST /studies with the spec file's contents."""
    answer = request("POST", "/studies", json=_read_spec(args.file))
    return _print(args, answer, lambda console: print_studies(console, [answer], details=True))


def run_list(args: argparse.Namespace) -> int:
    """GET /studies."""
    answer = request("GET", "/studies")
    return _print(args, answer, lambda console: print_studies(console, answer))


def run_show(args: argparse.Namespace) -> int:
    """GET /studies/{name}."""
    answer = request("GET", f"/studies/{args.name}")
    return _print(args, answer, lambda console: print_studies(console, [answer], details=True))


def run_trials(args: argparse.Namespace) -> int:
    """GET /studies/{name}/trials."""
    answer = request("GET", f"/studies/{args.name}/trials", params={"offset": args.offset, "limit": args.limit})
    return _print(args, answer, lambda console: console.print(trials_table(answer)))


def run_best(args: argparse.Namespace) -> int:
    """GET /studies/{name}/best, optionally writing its config to a file."""
    answer = request("GET", f"/studies/{args.name}/best")
    if args.config_out:
        args.config_out.write_text(json.dumps(answer["config"], indent=2) + "\n")
    if args.refit:
        return _refit_best(args, answer)
    if args.download:
        download(f"/studies/{args.name}/best/model", args.download)
        answer = {**answer, "model": str(args.download)}
    return _print(args, answer, lambda console: print_best(console, answer, args.config_out))


def run_export(args: argparse.Namespace) -> int:
    """GET /studies/{name}/trials.csv (or .jsonl) into a file."""
    download(f"/studies/{args.name}/trials.{args.format}", args.output)
    answer = {"exported": args.name, "format": args.format, "file": str(args.output)}
    return _print(args, answer, lambda console: console.print(f"wrote {args.output} ({args.format})"))


def run_report(args: argparse.Namespace) -> int:
    """GET /studies/{name}/report into a file."""
    download(f"/studies/{args.name}/report", args.output)
    answer = {"report": args.name, "file": str(args.output)}
    return _print(args, answer, lambda console: console.print(f"wrote {args.output}: open it in a browser"))


def run_compare(args: argparse.Namespace) -> int:
    """GET /report?studies=A,B,... into a file."""
    download("/report", args.output, params={"studies": ",".join(args.names)})
    answer = {"compared": args.names, "file": str(args.output)}
    return _print(args, answer, lambda console: console.print(f"wrote {args.output}: open it in a browser"))


def run_patch(args: argparse.Namespace) -> int:
    """PATCH /studies/{name} with the fields given."""
    change: dict[str, Any] = {}
    if args.max_trials is not None:
        change["max_trials"] = args.max_trials
    if args.stop_when is not None:
        try:
            change["stop_when"] = json.loads(args.stop_when)
        except json.JSONDecodeError as exc:
            raise CliError(f"--stop-when is not JSON: {exc}") from None
    if not change:
        raise CliError("nothing to change: give --max-trials or --stop-when")
    answer = request("PATCH", f"/studies/{args.name}", json=change)
    return _print(args, answer, lambda console: print_studies(console, [answer]))


def run_status_change(args: argparse.Namespace) -> int:
    """POST /studies/{name}/pause, resume or stop."""
    answer = request("POST", f"/studies/{args.name}/{args.study_command}")
    return _print(args, answer, lambda console: print_studies(console, [answer]))


def run_delete(args: argparse.Namespace) -> int:
    """DELETE /studies/{name}."""
    request("DELETE", f"/studies/{args.name}")
    answer = {"deleted": args.name}
    return _print(args, answer, lambda console: console.print(f"deleted {args.name}"))


def _refit_best(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    """``hpo study best NAME --refit``: the best config trained here on all its training images."""
    from cli.train_cmd import print_result, train_config
    from objectives.config import TrainingConfig

    if not args.json:
        print_best(Console(), answer, args.config_out)
    refit = train_config(TrainingConfig.model_validate(answer["config"]), refit=True, save=args.download, threads=None)
    if args.json:
        print(json.dumps({**answer, "refit": refit}))
    else:
        print("refit on all training images:")
        print_result(refit, as_json=False)
    return 0


def _print(args: argparse.Namespace, answer: Any, for_people: Callable[[Console], None]) -> int:
    if args.json:
        print(json.dumps(answer))
    else:
        for_people(Console())
    return 0


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(spec, dict):
        raise CliError(f"{path} must hold one study spec (a mapping)")
    return spec
