"""The system the chaos benchmark attacks: a private PostgreSQL cluster, the API, worker processes.

Each piece is a real process started the way a user starts it (``hpo serve``, ``worker``), in its
own process group, with its output in a log file, and can be killed and started again.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cli.local_api import free_port


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port (trust auth), removed by ``remove``."""

    def __init__(self, work: Path, max_connections: int = 200) -> None:
        self.max_connections = max_connections
        initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not initdbs:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
        self.bin = Path(initdbs[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="hpo-chaos-pg.", dir=work))
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []  # initdb refuses root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.start()
        admin = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run([sys.executable, "-c", _CREATE_DB, admin], check=True)
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/hpo"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, stdout=subprocess.DEVNULL)

    def _options(self) -> str:
        limits = f"-c max_connections={self.max_connections} -c fsync=off"
        return f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 {limits}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o", self._options(), "start"
        )

    def stop(self, mode: str) -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (as a crash)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


_CREATE_DB = """
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with engine.connect() as connection:
    connection.execute(text("CREATE DATABASE hpo"))
"""


class Service:
    """One long-running process of the system (the API, or a worker), restartable."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process in its own process group."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the whole process group (the worker's children too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """Wait for the process to exit; kill its group if it has not within ``timeout``."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            return self.proc.wait()

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None


def service_env(database_url: str, data_root: Path, work: Path, port: int) -> dict[str, str]:
    """The environment of the API and workers a benchmark starts: this database and data root, a
    private artifact folder, the API on ``port``, and no tokens. HPO_CACHE_DIR passes through
    (default ~/.cache/hpo), so a dataset is decoded once and reused by later runs."""
    env = {
        **os.environ,
        "HPO_DATABASE_URL": database_url,
        "HPO_DATA_DIR": str(data_root),
        "HPO_ARTIFACT_DIR": str(work / "artifacts"),
        "HPO_API_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    for secret in ("HPO_API_TOKEN", "HPO_VIEWER_TOKEN"):
        env.pop(secret, None)
    return env


def api_service(port: int, env: dict[str, str], logs: Path) -> Service:
    """``hpo serve`` on ``port``."""
    return Service("api", [sys.executable, "-m", "cli.main", "serve", "--port", str(port)], env, logs)


def worker_service(index: int, env: dict[str, str], logs: Path, slots: int) -> Service:
    """``worker --gpus cpu --trials-per-gpu slots``."""
    command = [sys.executable, "-m", "worker.cli", "--gpus", "cpu", "--trials-per-gpu", str(slots), "--plain"]
    return Service(f"worker-{index}", [*command, "--poll", "0.5"], env, logs)


def wait_until_up(url: str, timeout: float) -> None:
    """Wait until GET ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")
