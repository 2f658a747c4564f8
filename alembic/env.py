"""Alembic environment: only the hpo_* tables, versioned in hpo_alembic_version.

Optuna stamps its own schema in the default ``alembic_version`` table; sharing it would
corrupt both, so ours is ``hpo_alembic_version`` and autogenerate ignores Optuna's tables.
"""

from __future__ import annotations

from alembic import context

from service.db.models import Base

VERSION_TABLE = "hpo_alembic_version"


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Look only at our tables."""
    return type_ != "table" or (name or "").startswith("hpo_")


def run_migrations() -> None:
    connection = context.config.attributes["connection"]  # hpo migrate passes an open connection
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
