"""What a worker prints on a terminal (a bar per slot, lines above) and off one (plain lines)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

from tests.conftest import DATA_ROOT
from tests.worker.helpers import HEARTBEAT, STARTED, new_study, trials


def run_on_a_terminal(url: str, artifacts, *args: str) -> tuple[int, str]:
    """Run `worker ... --burst` with a pseudo-terminal as its stdout and stderr; its exit code and output."""
    primary, replica = pty.openpty()
    env = {**os.environ, "HPO_DATABASE_URL": url, "HPO_DATA_DIR": str(DATA_ROOT), "HPO_ARTIFACT_DIR": str(artifacts)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "--gpus", "cpu", "--poll", "0.5", "--burst", *args],
        env={**env, **HEARTBEAT, "COLUMNS": "160"},
        stdin=subprocess.DEVNULL,
        stdout=replica,
        stderr=replica,
        start_new_session=True,
    )
    STARTED.append(proc)
    os.close(replica)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    text = b"".join(chunks).decode(errors="replace")
    return proc.wait(timeout=60), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # without colours and cursor moves


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_on_a_terminal_each_slot_has_a_bar_and_trial_lines_print_above_the_bars(db, tmp_path):
    new_study(db, name="bars", max_trials=2, epochs=2, pruner={"name": "none"})
    code, output = run_on_a_terminal(db.url, tmp_path, "--trials-per-gpu", "2", "--study", "bars")
    assert code == 0, output
    assert "slot 0: bars trial" in output and "slot 1: bars trial" in output
    assert "2/2 epochs" in output and "val 0." in output
    assert "━" in output  # rich's bar
    assert "of bars: start" in output and "of bars: complete" in output  # printed above the bars
    assert "epoch 1/2 loss" not in output  # epoch ends move a bar instead of printing a line
    assert sorted(t.state.name for t in trials(db, "bars")) == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plain_prints_every_epoch_as_a_line_even_on_a_terminal(db, tmp_path):
    new_study(db, name="lines", max_trials=1, epochs=2, pruner={"name": "none"})
    code, output = run_on_a_terminal(db.url, tmp_path, "--plain", "--study", "lines")
    assert code == 0, output
    assert "epoch 1/2 loss" in output and "epoch 2/2 loss" in output
    assert "[slot 0 pid" in output
    assert "━" not in output
