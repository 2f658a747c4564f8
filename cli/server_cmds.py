"""``hpo migrate``, ``hpo serve``, ``hpo dashboard`` and ``hpo worker``: the long-running pieces."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from service.settings import MIN_TOKEN_LENGTH, get_settings
from worker import cli as worker_cli

log = logging.getLogger("hpo")


def add_parsers(subparsers: Any) -> None:
    """Register migrate, serve, dashboard and worker."""
    migrate = subparsers.add_parser("migrate", help="create or upgrade Optuna's schema and ours")
    migrate.set_defaults(run=run_migrate)

    serve = subparsers.add_parser("serve", help="run the API (uvicorn)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1, or 0.0.0.0 when HPO_API_TOKEN is set")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=run_serve)

    dashboard = subparsers.add_parser("dashboard", help="run optuna-dashboard on the same database")
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.set_defaults(run=run_dashboard)

    worker = subparsers.add_parser(
        "worker", help="run trials (the `worker` command)", description=worker_cli.DESCRIPTION
    )
    worker_cli.add_arguments(worker)
    worker.set_defaults(run=worker_cli.run)


def run_migrate(_args: argparse.Namespace) -> int:
    """Bring both schemas to head."""
    from service.db.database import Database
    from service.db.migrate import current_revision, migrate

    database = Database(get_settings().migration_url)
    try:
        migrate(database)
        print(f"migrated: hpo schema at {current_revision(database)}, Optuna schema at head")
    finally:
        database.dispose()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the API until interrupted."""
    import uvicorn

    settings = get_settings()
    host = args.host or ("0.0.0.0" if settings.api_token else "127.0.0.1")
    logging.basicConfig(level=logging.INFO)
    if settings.api_token is None:
        log.warning("HPO_API_TOKEN is not set: the API accepts every request. Binding %s.", host)
    for variable in settings.short_tokens():
        log.warning("%s is shorter than %s characters: easy to guess", variable, MIN_TOKEN_LENGTH)
    uvicorn.run("service.api:create_app", factory=True, host=host, port=args.port)
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    """Serve optuna-dashboard on HPO_DATABASE_URL until interrupted."""
    import optuna_dashboard

    from service.db.database import Database

    database = Database.from_settings(get_settings(), role="dashboard")
    optuna_dashboard.run_server(database.storage, host=args.host, port=args.port)
    return 0
