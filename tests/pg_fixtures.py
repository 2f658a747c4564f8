"""Database fixtures: a fresh PostgreSQL database per test (cloned from a migrated template)
and a fresh SQLite file, each migrated to head, and a Database handle on it. `make test` sets
HPO_TEST_PG_URL."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from service.db.database import Database

PG_URL = os.environ.get("HPO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the test server's maintenance database."""
    url = make_url(PG_URL).set(drivername="postgresql+psycopg2")
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(
            f"no PostgreSQL at {url.render_as_string(hide_password=True)} ({exc}); run the tests with "
            "`make test`, which finds or starts one, or set HPO_TEST_PG_URL",
            pytrace=False,
        )
    yield engine
    engine.dispose()


def _database_url(admin: Engine, name: str) -> str:
    return admin.url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template(pg_admin: Engine) -> Iterator[str]:
    """A database migrated once per session, cloned for each test."""
    name = f"hpo_template_{os.getpid()}"
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    _migrate(_database_url(pg_admin, name))  # a template must have no open connection: this one closes its own
    yield name
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_admin: Engine, pg_template: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; HPO_DATABASE_URL points at it."""
    from service.settings import get_settings

    with fresh_pg_database(pg_admin, pg_template) as url:
        monkeypatch.setenv("HPO_DATABASE_URL", url)
        get_settings.cache_clear()
        yield url


@pytest.fixture(scope="module")
def module_pg_url(pg_admin: Engine, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database that a module's tests share (for a live server
    whose set-up several tests read; HPO_DATABASE_URL is left alone)."""
    with fresh_pg_database(pg_admin, pg_template) as url:
        yield url


@contextlib.contextmanager
def fresh_pg_database(pg_admin: Engine, pg_template: str) -> Iterator[str]:
    """A database cloned from the migrated template, dropped at the end; yields its URL."""
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    try:
        yield _database_url(pg_admin, name)
    finally:
        with pg_admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated SQLite database file; HPO_DATABASE_URL points at it."""
    from service.settings import get_settings

    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    _migrate(url)
    monkeypatch.setenv("HPO_DATABASE_URL", url)
    get_settings.cache_clear()
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on a fresh PostgreSQL database and on a fresh SQLite file."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on ``db_url``, built from the settings as every process builds it."""
    yield from _database()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A Database on ``pg_url``, built from the settings as every process builds it."""
    yield from _database()


def _database() -> Iterator[Database]:
    from service.settings import get_settings

    database = Database.from_settings(get_settings())  # HPO_DATABASE_URL: the url fixture's database
    yield database
    database.dispose()


def _migrate(url: str) -> None:
    from service.db.migrate import migrate

    database = Database(url)
    migrate(database)
    database.dispose()


@dataclass(frozen=True)
class LimitedRole:
    """A login role on the test database whose connections the test rations: ``allow(0)`` makes
    the server refuse every new one (SQLSTATE 53300, as when max_connections is reached)."""

    name: str
    url: str
    admin: Engine

    def allow(self, connections: int) -> None:
        """Set how many connections the role may hold at once."""
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER ROLE "{self.name}" CONNECTION LIMIT {int(connections)}'))


@pytest.fixture
def limited_role(pg_admin: Engine, pg_url: str) -> Iterator[LimitedRole]:
    """A role with every right on the ``pg_url`` database, allowed no connection until ``allow``."""
    name = f"hpo_limited_{uuid.uuid4().hex[:8]}"
    with pg_admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 0'))
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        for objects in ("TABLES", "SEQUENCES"):
            connection.execute(text(f'GRANT ALL ON ALL {objects} IN SCHEMA public TO "{name}"'))
    yield LimitedRole(name, make_url(pg_url).set(username=name).render_as_string(hide_password=False), pg_admin)
    with owner.connect() as connection:
        sessions = text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n")
        connection.execute(sessions, {"n": name})
        connection.execute(text(f'DROP OWNED BY "{name}"'))
    owner.dispose()
    with pg_admin.connect() as connection:
        connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))


@dataclass(frozen=True)
class PgBouncer:
    """A PgBouncer in transaction mode in front of the test server (see the ``pgbouncer`` fixture)."""

    port: int
    console_dsn: str  # its admin console, for psycopg2 (SHOW POOLS, SHOW STATS)

    def url_for(self, database_url: str) -> str:
        """``database_url`` (a database on the test server) reached through this PgBouncer."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)


PGBOUNCER_INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 2
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
"""


@pytest.fixture
def pgbouncer(pg_admin: Engine) -> Iterator[PgBouncer]:
    """A real PgBouncer (Debian's ``pgbouncer``; .ci/run installs it) in transaction mode, in front
    of the test server, with at most 2 server connections per database: fewer than the clients,
    as in production, so that a client needing two connections at once would deadlock it."""
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from cli.local_api import free_port

    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="hpo-pgbouncer."))  # not under pytest's folder: PgBouncer's user reads it
    server, listen = pg_admin.url, free_port()
    user = server.username or "postgres"
    (root / "users.txt").write_text(f'"{user}" ""\n')
    ini = PGBOUNCER_INI.format(host=server.host, port=server.port or 5432, listen=listen, root=root, user=user)
    (root / "pgbouncer.ini").write_text(ini)
    run_as = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(root, "postgres")
        for path in root.iterdir():
            shutil.chown(path, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with open(root / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([*run_as, binary, str(root / "pgbouncer.ini")], stderr=stderr)
    deadline = time.monotonic() + 20
    while not os.path.exists(root / "pgbouncer.pid") or not _port_open(listen):
        if proc.poll() is not None or time.monotonic() > deadline:
            output = "".join(p.read_text() for p in (root / "stderr.txt", root / "pgbouncer.log") if p.exists())
            pytest.fail(f"pgbouncer did not start (exit {proc.poll()}): {output[-2000:]}")
        time.sleep(0.1)
    yield PgBouncer(listen, f"host=127.0.0.1 port={listen} dbname=pgbouncer user={user}")
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(root, ignore_errors=True)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
