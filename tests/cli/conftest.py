"""A live API server (``hpo serve``) with a token, on a fresh PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.local_api import free_port
from tests.conftest import DATA_ROOT

TOKEN = "cli-test-token-0123456789"
VIEWER_TOKEN = "cli-viewer-token-0123456789"


@dataclass(frozen=True)
class LiveApi:
    """Where the server listens and the environment a client needs to reach it."""

    url: str
    env: dict[str, str]


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200, failing early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def live_api(pg_url, tmp_path) -> Iterator[LiveApi]:
    """`hpo serve` on a fresh database, for one test."""
    with running_api(pg_url, tmp_path / "artifacts") as api:
        yield api


@pytest.fixture(scope="module")
def module_api(module_pg_url, tmp_path_factory) -> Iterator[LiveApi]:
    """`hpo serve` on a fresh database, shared by a module's tests."""
    with running_api(module_pg_url, tmp_path_factory.mktemp("artifacts")) as api:
        yield api


@contextlib.contextmanager
def running_api(database_url: str, artifact_dir: Path) -> Iterator[LiveApi]:
    """`hpo serve` on ``database_url`` with the admin and viewer tokens, until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "HPO_DATABASE_URL": database_url,
        "HPO_DATA_DIR": str(DATA_ROOT),
        "HPO_API_TOKEN": TOKEN,
        "HPO_VIEWER_TOKEN": VIEWER_TOKEN,
        "HPO_API_URL": f"http://127.0.0.1:{port}",
        "HPO_ARTIFACT_DIR": str(artifact_dir),
        "HPO_HEARTBEAT_INTERVAL": "1",
        "HPO_HEARTBEAT_GRACE": "4",
        "HPO_STALE_CHECK_INTERVAL": "2",  # the API's sweeps, the dashboard's learning curves among them
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield LiveApi(f"http://127.0.0.1:{port}", env)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
