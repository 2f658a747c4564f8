"""A PostgreSQL restart in the middle of a study: workers ride it out and nothing is lost.

The test runs its own throwaway cluster (from the local PostgreSQL binaries) so that it can
restart the server without disturbing the rest of the suite.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from cli.local_api import free_port
from service.db.database import Database, Heartbeat
from service.db.migrate import migrate
from tests.worker.helpers import (
    assert_exact_budget,
    finish,
    new_study,
    running_trial_past_epoch,
    start_worker,
    trials,
    wait_for,
)

pytestmark = pytest.mark.slow


class Cluster:
    """A private PostgreSQL cluster controlled with pg_ctl."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir, self.root = bin_dir, root
        self.port = free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            shutil.chown(root, "postgres")
        self._run("initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.run_as, str(self.bin_dir / tool), *args], check=True, capture_output=True, timeout=120)

    def pg_ctl(self, action: str) -> None:
        """start, stop or restart the server."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "log"),
            "-w",
            "-m",
            "fast",
            "-o",
            options,
            action,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: cannot restart a private server")
    root = Path(tempfile.mkdtemp(prefix="hpo-pg-restart-"))  # not under pytest's root-only tmp: postgres must enter
    cluster = Cluster(Path(found[-1]).parent, root)
    cluster.pg_ctl("start")
    yield cluster
    subprocess.run(
        [*cluster.run_as, str(cluster.bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
        capture_output=True,
        timeout=60,
    )


def test_postgres_restart_mid_study_loses_nothing(cluster, tmp_path):
    from sqlalchemy import create_engine, text

    admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE hpo"))
    admin.dispose()
    db = Database(cluster.url("hpo"), heartbeat=Heartbeat(interval=1, grace=30))
    migrate(db)
    new_study(
        db,
        max_trials=4,
        epochs=4,
        pruner={"name": "none"},
        sampler={"name": "random", "seed": 2},
        dataset={"kind": "imagefolder", "path": "cifar10-sample", "limit": 1500},
    )
    worker = start_worker(db, tmp_path, "--burst", log=tmp_path / "worker.log", env={"HPO_HEARTBEAT_GRACE": "30"})
    wait_for(lambda: running_trial_past_epoch(db, "s", 1) is not None, 120, "a trial past epoch 1")

    db.dispose()  # this test process's own connections die with the restart too
    cluster.pg_ctl("restart")

    assert finish(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert_exact_budget(db, "s", 4)
    states = [t.state for t in trials(db, "s")]
    assert states == [optuna.trial.TrialState.COMPLETE] * 4  # no trial failed, nothing was lost
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in trials(db, "s"))
    db.dispose()
