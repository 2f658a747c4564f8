"""``hpo migrate``: bring Optuna's schema and ours (hpo_*) to head, safely and concurrently."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy import Engine, text

from service.db.database import Database, engine_options
from service.optuna.storage import upgrade_optuna_schema
from service.settings import Settings

ALEMBIC_INI_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "alembic.ini",  # a checkout (editable install)
    Path.cwd() / "alembic.ini",  # an installed package run from the project folder (the Docker image: /app)
)
LOCK_KEY = 0x68706F  # "hpo": the advisory-lock key that serialises migrations on PostgreSQL


def migrate_from_settings(settings: Settings) -> None:
    """``migrate`` on the database the settings name for migrations (see Settings.migration_url),
    through a pool of its own that is closed afterwards."""
    database = Database(settings.migration_url)
    try:
        migrate(database)
    finally:
        database.dispose()


def migrate(db: Database) -> None:
    """Create or upgrade both schemas. Safe to run twice, or from several processes at once."""
    with _migration_lock(db.engine):
        upgrade_optuna_schema(db.url, engine_options(db.url))
        _alembic("upgrade", db.engine, "head")


def downgrade(db: Database, revision: str) -> None:
    """Downgrade our hpo_* tables to ``revision`` (``base`` drops them); Optuna's stay."""
    with _migration_lock(db.engine):
        _alembic("downgrade", db.engine, revision)


def current_revision(db: Database) -> str | None:
    """The hpo_* schema revision recorded in hpo_alembic_version, or None before the first migrate."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(
            connection, opts={"version_table": "hpo_alembic_version"}
        ).get_current_revision()


def alembic_ini() -> Path:
    """The project's alembic.ini (HPO_ALEMBIC_INI overrides the search)."""
    override = os.environ.get("HPO_ALEMBIC_INI")
    for candidate in [Path(override)] if override else ALEMBIC_INI_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "alembic.ini not found beside the package or in the current folder; "
        "run from the project folder or set HPO_ALEMBIC_INI"
    )


def _alembic(action: str, engine: Engine, revision: str) -> None:
    config = Config(str(alembic_ini()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with FileLock(f"{engine.url.database}.migrate.lock"):
            yield
    else:
        yield
