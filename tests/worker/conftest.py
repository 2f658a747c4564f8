"""Worker tests start real processes: none may outlive its test."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests.worker.helpers import STARTED


@pytest.fixture(autouse=True)
def _reap_workers():
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
