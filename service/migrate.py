"""``hpo migrate``: bring Optuna's schema and ours (hpo_*) to head, safely and concurrently."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from optuna.storages import RDBStorage
from sqlalchemy import Engine, text

from service.database import engine_kwargs, get_engine, normalise_url

ALEMBIC_INI_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "alembic.ini",  # a checkout (editable install)
    Path.cwd() / "alembic.ini",  # an installed package run from the project folder (the Docker image: /app)
)
LOCK_KEY = 0x68706F  # "hpo": the advisory-lock key that serialises migrations on PostgreSQL


def migrate(url: str) -> None:
    """Create or upgrade both schemas. Safe to run twice, or from several processes at once."""
    url = normalise_url(url)
    engine = get_engine(url)
    with _migration_lock(engine):
        storage = RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_compatibility_check=True)
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
        storage.engine.dispose()  # migrations are one-off: keep no pooled connections
        _alembic("upgrade", engine, "head")


def downgrade(url: str, revision: str) -> None:
    """Downgrade our hpo_* tables to ``revision`` (``base`` drops them); Optuna's stay."""
    engine = get_engine(normalise_url(url))
    with _migration_lock(engine):
        _alembic("downgrade", engine, revision)


def current_revision(url: str) -> str | None:
    """The hpo_* schema revision recorded in hpo_alembic_version, or None before the first migrate."""
    from alembic.runtime.migration import MigrationContext

    with get_engine(normalise_url(url)).connect() as connection:
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
