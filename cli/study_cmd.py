"""``hpo study create FILE | list | show | best | pause | resume | stop | delete``: the API for people.

Reads HPO_API_URL and HPO_API_TOKEN. Tables for people by default, ``--json`` for scripts.
An error answer prints the API's message and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from cli.errors import CliError, describe_errors
from service.settings import get_settings

ACTIONS = ("pause", "resume", "stop")


def add_parser(subparsers: Any) -> None:
    """Register ``study`` and its subcommands."""
    study = subparsers.add_parser("study", help="create and manage studies through the API")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    create = commands.add_parser("create", help="create a study from a YAML or JSON spec")
    create.add_argument("file", type=Path)
    commands.add_parser("list", help="every study with progress")
    for name in ("show", "delete", *ACTIONS):
        commands.add_parser(name, help=f"{name} a study").add_argument("name")
    best = commands.add_parser("best", help="the best trial and its config")
    best.add_argument("name")
    best.add_argument("--config-out", type=Path, help="write the config that `hpo train --config` reproduces")
    for sub in commands.choices.values():
        sub.add_argument("--json", action="store_true", help="print the API's JSON answer")
    study.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Send the request for the chosen action and print the answer."""
    command = args.study_command
    with _client() as api:
        if command == "create":
            answer = _call(api, "POST", "/studies", json=_read_spec(args.file))
        elif command == "list":
            answer = _call(api, "GET", "/studies")
        elif command == "show":
            answer = _call(api, "GET", f"/studies/{args.name}")
        elif command == "best":
            answer = _call(api, "GET", f"/studies/{args.name}/best")
        elif command == "delete":
            _call(api, "DELETE", f"/studies/{args.name}")
            answer = {"deleted": args.name}
        else:
            answer = _call(api, "POST", f"/studies/{args.name}/{command}")
    if command == "best" and args.config_out:
        args.config_out.write_text(json.dumps(answer["config"], indent=2) + "\n")
    if args.json:
        print(json.dumps(answer))
    else:
        _print_human(command, answer, args)
    return 0


def _client() -> httpx.Client:
    settings = get_settings()
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    return httpx.Client(base_url=settings.api_url, headers=headers, timeout=60)


def _call(api: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = api.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the API at {api.base_url} ({exc}); is `hpo serve` running? (HPO_API_URL sets the address)"
        ) from None
    if response.status_code >= 400:
        raise CliError(f"{method} {path} answered {response.status_code}: {_explain(response)}")
    return None if response.status_code == 204 else response.json()


def _explain(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):  # pydantic's list of validation errors
        return "invalid spec\n" + describe_errors(detail)
    return str(detail)


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


def _print_human(command: str, answer: Any, args: argparse.Namespace) -> None:
    console = Console()
    if command == "list":
        console.print(_table(answer))
    elif command == "best":
        metrics = answer["metrics"]
        console.print(
            f"best trial {answer['trial_number']}: val_accuracy {answer['value']:.4f}, "
            f"test_accuracy {metrics.get('test_accuracy', float('nan')):.4f}"
        )
        console.print(f"params: {json.dumps(answer['params'])}")
        if args.config_out:
            console.print(f"config written to {args.config_out}: hpo train --config {args.config_out}")
        else:
            console.print(f"config: {json.dumps(answer['config'])}")
    elif command == "delete":
        console.print(f"deleted {answer['deleted']}")
    else:
        console.print(_table([answer]))
        if command in ("show", "create") and answer.get("dashboard_url"):
            console.print(f"dashboard: {answer['dashboard_url']}")


def _table(studies: list[dict[str, Any]]) -> Table:
    table = Table("name", "status", "progress", "running", "pruned", "failed", "best val_accuracy")
    for s in studies:
        counts = s["counts"]
        best = "-" if s["best_value"] is None else f"{s['best_value']:.4f}"
        table.add_row(
            s["name"],
            s["status"],
            f"{s['finished']}/{s['max_trials']}",
            str(counts["running"]),
            str(counts["pruned"]),
            str(counts["fail"]),
            best,
        )
    return table
