"""A live API server (``hpo serve``) with a token, on a fresh PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

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
    port = free_port()
    env = {
        **os.environ,
        "HPO_DATABASE_URL": pg_url,
        "HPO_DATA_DIR": str(DATA_ROOT),
        "HPO_API_TOKEN": TOKEN,
        "HPO_VIEWER_TOKEN": VIEWER_TOKEN,
        "HPO_API_URL": f"http://127.0.0.1:{port}",
        "HPO_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "HPO_HEARTBEAT_INTERVAL": "1",
        "HPO_HEARTBEAT_GRACE": "4",
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
