"""What the four systems of benchmarks/peers.py share: the race's setting, its events, their summary,
and the CPU seconds of a system's processes.

Every system runs the same search (``SPACE`` at one width) on the same split, with the same epochs
per trial, two trials at a time, for the same wall-clock budget. What happens is kept as events,
in seconds since the system was started: one per epoch (``val``, and ``train_s``, the seconds of
the epoch's training pass) and one per finished trial (``state``, ``val``, ``test``, ``params``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
}
CONCURRENT = 2  # trials at a time, one CPU thread each, on every system


@dataclass(frozen=True)
class Race:
    """One run of one system: the data, the model width, epochs per trial, budget, target, seed."""

    dataset: dict[str, Any]
    data_root: str  # HPO_DATA_DIR: the folder that ``dataset["path"]`` is under
    cache_dir: str  # where decoded datasets are kept (HPO_CACHE_DIR), shared by every system
    width: float
    epochs: int
    budget_s: float
    target: float
    seed: int
    max_trials: int = 1000  # "as many as the budget allows"; the tiny mode sets 1
    fault: bool = False  # kill one training process mid-trial (benchmarks/peers_faults.py)

    def to_json(self) -> str:
        """The race as one JSON line (handed to a system's own process)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Race:
        """The race :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    def training_config(self, params: dict[str, Any]) -> dict[str, Any]:
        """The objectives.config.TrainingConfig (as a dict) of one sampled config."""
        return {
            "dataset": self.dataset,
            "params": {**params, "width": self.width},
            "epochs": self.epochs,
            "seed": self.seed,
        }


@dataclass
class Events:
    """Epoch and trial-end events of one system, appended as JSON lines to ``path`` when it has one."""

    path: Path | None = None
    started: float = field(default_factory=time.time)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        """Record one event now (``t`` is set here unless given)."""
        row.setdefault("t", time.time() - self.started)
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a") as out:
                out.write(json.dumps(row) + "\n")

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The rows a process appended to ``path`` (none if it wrote none)."""
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(rows: list[dict[str, Any]], race: Race) -> dict[str, Any]:
    """The race's figures from its events, counting only what happened within the budget."""
    within = [r for r in rows if r["t"] <= race.budget_s]
    epochs = [r for r in within if "epoch" in r]
    ends = [r for r in within if "state" in r]
    complete = [r for r in ends if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["val"], default=None)
    reached = [r["t"] for r in epochs if r["val"] >= race.target]
    return {
        "best_val": best["val"] if best else None,
        "best_test": best.get("test") if best else None,
        "best_params": best.get("params") if best else None,
        "best_epoch_val": max((r["val"] for r in epochs), default=None),
        "time_to_target_s": min(reached) if reached else None,
        "epochs": len(epochs),
        "train_s": sum(r.get("train_s", 0.0) for r in epochs),
        "finished": len(complete),
        "pruned": sum(1 for r in ends if r["state"] == "pruned"),
    }


def become_subreaper() -> None:
    """Adopt this process's orphaned descendants (Linux), so their CPU time is counted when reaped."""
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class CpuSampler:
    """CPU seconds of every descendant of this process, read from /proc every ``period_s``.

    Ray's raylet ignores SIGCHLD, so its workers are reaped without their CPU time reaching
    ``RUSAGE_CHILDREN``; sampling sees them. A process's last ``period_s`` before it exits is missed.
    """

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start tick) -> CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        """The CPU seconds seen so far, all processes together."""
        return sum(self.seen.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period_s)

    def sample(self) -> None:
        """Read every descendant's CPU time now."""
        tick = os.sysconf("SC_CLK_TCK")
        stats = proc_stats()
        for pid in descendants(stats):
            fields = stats[pid]
            self.seen[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / tick


def descendants(stats: dict[int, list[str]]) -> list[int]:
    """The pids of this process's descendants among ``stats`` (proc_stats())."""
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def proc_stats() -> dict[int, list[str]]:
    """Each process's /proc/PID/stat fields after its name (state, ppid, ...)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    return stats


def children_cpu_seconds() -> float:
    """User plus system CPU seconds of every descendant reaped so far (theirs included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def kill_and_reap_descendants(grace_s: float = 10.0) -> None:
    """Kill what is left of this process's children (adopted orphans too) and reap them all."""
    deadline = time.time() + grace_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no child left
        if pid:
            continue
        if time.time() > deadline:
            for child in _children():
                kill(child)
        time.sleep(0.1)


def _children() -> list[int]:
    return [pid for pid, fields in proc_stats().items() if int(fields[1]) == os.getpid()]


def kill(pid: int) -> None:
    """SIGKILL, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


WARM_IMPORTS = "import torch, torchvision, optuna, sqlalchemy, fastapi, uvicorn, psycopg2"


def warm_up(race: Race, with_ray: bool) -> float:
    """Import what the systems import and read the race's images once, in a throwaway process,
    before any budget starts; returns its seconds. On a fresh install the first system started
    otherwise paid for reading the virtual environment's files from disk (torch alone took 20 s
    to import with a cold page cache, several processes at once far longer): a first system that
    trained nothing in its 150 s."""
    code = (
        f"{WARM_IMPORTS}{', ray.tune' if with_ray else ''}\n"
        "import json, sys\n"
        "from objectives.data import load_dataset\n"
        "race = json.loads(sys.argv[1])\n"
        "load_dataset(race['dataset'], data_dir=race['data_root'], cache_dir=race['cache_dir'])\n"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code, race.to_json()], check=True)
    return time.monotonic() - started
