"""Throwaway PostgreSQL databases for the benchmarks that need one.

The server comes from HPO_DATABASE_URL (when it is a PostgreSQL URL), else HPO_TEST_PG_URL,
else the local server on 127.0.0.1:5432. The benchmarks create their own databases on it and
drop them afterwards, so its user needs CREATEDB.
"""

from __future__ import annotations

import os
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def postgres_server() -> str:
    """The SQLAlchemy URL of the server to benchmark against (its database part is ignored)."""
    url = os.environ.get("HPO_DATABASE_URL", "")
    if not url.startswith("postgres"):
        url = os.environ.get("HPO_TEST_PG_URL") or DEFAULT_SERVER
    return make_url(url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def admin_execute(server: str, statement: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE) on the server."""
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(statement))
    admin.dispose()


def database_url(server: str, name: str) -> str:
    """The server URL pointed at database ``name``."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def create_database(server: str, template: str | None = None) -> str:
    """A new database (migrated, or a copy of ``template``); returns its name."""
    from service.db.database import Database
    from service.db.migrate import migrate

    name = f"hpo_bench_{uuid.uuid4().hex[:10]}"
    admin_execute(server, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    if template is None:
        database = Database(database_url(server, name))
        migrate(database)
        database.dispose()
    return name


def drop_database(server: str, name: str) -> None:
    """Remove a benchmark database, closing whatever still holds it."""
    admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
