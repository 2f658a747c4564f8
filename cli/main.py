"""Entry point of the ``hpo`` command."""

from __future__ import annotations

import argparse
import sys
import warnings

from cli import demo_cmd, pretrained_cmd, server_cmds, study_cmd, train_cmd
from cli.errors import CliError
from service.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    """The ``hpo`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="hpo", description="Distributed hyperparameter search for image models.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_cmds.add_parsers(subparsers)
    demo_cmd.add_parser(subparsers)
    study_cmd.add_parser(subparsers)
    train_cmd.add_parser(subparsers)
    pretrained_cmd.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``hpo``; expected failures print one clear message and exit non-zero."""
    warnings.filterwarnings("ignore", message=".*experimental.*")  # Optuna's heartbeat API is marked experimental
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CliError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
