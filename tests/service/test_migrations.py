"""hpo migrate: both schemas side by side, idempotent, concurrent, reversible."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import inspect, text

from service.db.database import Database
from service.db.migrate import current_revision, downgrade, migrate

OPTUNA_TABLES = {"alembic_version", "studies", "trials", "trial_values", "trial_heartbeats"}
OUR_TABLES = {"hpo_alembic_version", "hpo_studies", "hpo_tally_snapshots"}


@pytest.fixture
def empty_pg(pg_admin):
    """A Database on a brand-new PostgreSQL database without any table."""
    name = f"hpo_empty_{uuid.uuid4().hex[:10]}"
    with pg_admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(pg_admin.url.set(database=name).render_as_string(hide_password=False))
    yield database
    database.dispose()
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def test_migrate_creates_both_schemas_with_separate_version_tables(empty_pg):
    migrate(empty_pg)
    tables = _tables(empty_pg)
    assert tables >= OPTUNA_TABLES | OUR_TABLES
    assert current_revision(empty_pg) == "0007_outbox"
    with empty_pg.engine.connect() as connection:
        optuna_version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert optuna_version.startswith("v")  # Optuna's own revision id, untouched by ours


def test_migrate_twice_is_a_no_op(empty_pg):
    migrate(empty_pg)
    migrate(empty_pg)
    assert current_revision(empty_pg) == "0007_outbox"


def test_concurrent_migrations_both_succeed(empty_pg):
    code = (
        "import sys; from service.db.database import Database; from service.db.migrate import migrate; "
        "migrate(Database(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, empty_pg.url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert _tables(empty_pg) >= OPTUNA_TABLES | OUR_TABLES


def test_downgrade_and_upgrade_round_trip_leaves_optuna_alone(empty_pg):
    migrate(empty_pg)
    downgrade(empty_pg, "base")
    tables = _tables(empty_pg)
    assert "hpo_studies" not in tables
    assert tables >= OPTUNA_TABLES
    assert current_revision(empty_pg) is None
    migrate(empty_pg)
    assert "hpo_studies" in _tables(empty_pg)


def test_sqlite_migrates_twice(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(database)
    migrate(database)
    assert _tables(database) >= OPTUNA_TABLES | OUR_TABLES
    database.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_studies_created_before_objectives_were_named_are_named_by_the_migration(empty_pg, tmp_path, dialect):
    """New studies name their objective val_accuracy (optuna-dashboard shows it instead of
    "Objective 0"); the migration names our studies that exist, as Optuna's own call would,
    keeps a name already set, and leaves studies that are not ours alone."""
    import optuna

    from service.spec.schema import StudySpec
    from service.studies.lifecycle import create_study
    from tests.conftest import make_spec

    database = empty_pg if dialect == "postgresql" else Database(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(database)
    with database.sessions() as session:
        for name in ("old", "named"):
            create_study(session=session, storage=database.storage, spec=StudySpec.model_validate(make_spec(name)))
    assert optuna.load_study(study_name="old", storage=database.storage).metric_names == ["val_accuracy"]
    optuna.create_study(study_name="not-ours", storage=database.storage)
    downgrade(database, "0004_tally_snapshots")
    with database.engine.begin() as connection:  # "old" as the code before this change created it
        connection.execute(
            text(
                "DELETE FROM study_system_attributes WHERE key = 'study:metric_names' AND study_id = "
                "(SELECT study_id FROM studies WHERE study_name = 'old')"
            )
        )
    optuna.load_study(study_name="named", storage=database.storage).set_metric_names(["accuracy"])
    assert optuna.load_study(study_name="old", storage=database.storage).metric_names is None
    migrate(database)
    names = {
        n: optuna.load_study(study_name=n, storage=database.storage).metric_names for n in ("old", "named", "not-ours")
    }
    assert names == {"old": ["val_accuracy"], "named": ["accuracy"], "not-ours": None}
    if database is not empty_pg:
        database.dispose()
