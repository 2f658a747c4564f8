"""Chaos: random faults against the whole system, and proof that nothing is lost.

A private PostgreSQL cluster, the API (``hpo serve``) and two ``worker --trials-per-gpu 2``
processes (4 CPU slots) serve two studies of tiny trials. For a fixed time a seeded schedule
injects faults, each kind equally often: kill -9 of a worker's process group, SIGTERM to a
worker's process group, a restart of the API, a restart of PostgreSQL (fast, and immediate as
in a crash), a study paused then resumed, and the studies' notification receiver down for 10 s
(it answers 503). What is killed is started again. A poller reads the API throughout. Then the
faults stop, the studies run to their end, and it checks:

- each study finished exactly max_trials lineages (a trial and its retries), none RUNNING or
  WAITING, no trial number twice;
- every retry resumed from its predecessor's last checkpoint (epochs lost per fault ≤ 1);
- no lineage ended FAIL (a fault may cost an epoch, never a trial);
- the API never answered 500, and 503 only while PostgreSQL was down (or just after);
- every event the outbox holds reached the receiver at least once (``events lost``).

    python -m benchmarks.chaos [--quick] [--seed N]

It ends with ``chaos faults N lost L events lost E``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.chaos_check import Verdict, verify
from benchmarks.chaos_cluster import PrivatePostgres, Service, api_service, wait_until_up, worker_service
from benchmarks.common import REPO, save
from cli.local_api import free_port

KINDS: tuple[str, ...] = ("kill_worker", "sigterm_worker", "restart_api", "restart_db_fast", "restart_db_immediate")
KINDS += ("pause_resume", "receiver_down")
RECEIVER_DOWN_S = 10.0
DB_GRACE = 10.0  # seconds after PostgreSQL is back during which a 503 is still expected


def study_spec(name: str, max_trials: int, seed: int, receiver_url: str) -> dict[str, Any]:
    """Tiny trials on the bundled sample: a few seconds each on one CPU thread."""
    return {
        "name": name,
        "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": 400, "val_fraction": 0.2},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}, "width": 0.0625},
        "epochs": 8,
        "max_trials": max_trials,
        "pruner": {"name": "none"},
        "sampler": {"name": "random", "seed": seed},
        "max_failed_trials": 1000,  # a failure must show in the verdict, not pause the study
        "notify": [{"url": receiver_url}],  # every event
    }


@dataclass
class Chaos:
    """The running system and what happened to it."""

    db: PrivatePostgres
    receiver: Receiver
    api: Service
    workers: list[Service]
    base: str  # the API's URL
    rng: random.Random
    names: list[str]
    faults: Counter[str] = field(default_factory=Counter)
    db_down: list[tuple[float, float]] = field(default_factory=list)  # (from, to) in time.monotonic()
    answers: list[tuple[float, int]] = field(default_factory=list)  # (when, status) of the poller's calls
    polling: threading.Event = field(default_factory=threading.Event)

    def inject(self, kind: str) -> None:
        """One fault of ``kind``; what it stops is started again."""
        if kind in ("kill_worker", "sigterm_worker"):
            worker = self.rng.choice(self.workers)
            worker.signal_group(signal.SIGKILL if kind == "kill_worker" else signal.SIGTERM)
            worker.wait(timeout=60)  # SIGTERM: the running epochs end and the trials are handed back
            worker.start()
        elif kind == "restart_api":
            self.api.signal_group(signal.SIGTERM)
            self.api.wait(timeout=30)
            self.api.start()
        elif kind.startswith("restart_db"):
            down = time.monotonic()
            self.db.stop("fast" if kind == "restart_db_fast" else "immediate")
            self.db.start()
            self.db_down.append((down, time.monotonic()))
        elif kind == "receiver_down":
            self.receiver.down_until = time.monotonic() + RECEIVER_DOWN_S
        elif kind == "pause_resume":
            name = self.rng.choice(self.names)
            self._post(f"/studies/{name}/pause")
            time.sleep(1.0)
            self._post(f"/studies/{name}/resume")
        self.faults[kind] += 1

    def _post(self, path: str) -> None:
        """POST until the API takes it (it may be restarting); 409 is fine (a finished study)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.post(self.base + path, timeout=5).status_code in (200, 409):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"POST {path} was not taken within 60 s")

    def poll(self) -> None:
        """Read the API until told to stop, recording each answer's status."""
        paths = ["/studies", *(f"/studies/{n}" for n in self.names), *(f"/studies/{n}/trials" for n in self.names)]
        calls = 0
        while not self.polling.is_set():
            try:
                status = httpx.get(self.base + paths[calls % len(paths)], timeout=10).status_code
                self.answers.append((time.monotonic(), status))
            except httpx.HTTPError:
                pass  # the API is restarting: no answer, nothing to judge
            calls += 1
            time.sleep(0.3)

    def deliveries(self, timeout: float) -> dict[str, Any]:
        """Wait until every event the outbox holds was delivered (or ``timeout``); the events written
        and those the receiver never got."""
        deadline = time.monotonic() + timeout
        written: set[str] = set()
        while time.monotonic() < deadline:
            try:
                rows = [
                    row for n in self.names for row in httpx.get(f"{self.base}/studies/{n}/events", timeout=5).json()
                ]
            except (httpx.HTTPError, ValueError):
                rows = []
            written = {row["id"] for row in rows}
            if rows and all(row["status"] == "delivered" for row in rows):
                break
            time.sleep(1)
        lost = written - set(self.receiver.ids)
        print(f"events: {len(written)} written, {len(self.receiver.ids)} deliveries received, lost {len(lost)}")
        return {"written": len(written), "received": len(self.receiver.ids), "lost": sorted(lost)}

    def finished(self) -> bool:
        """Both studies completed (the API may be restarting: then not yet)."""
        try:
            return all(
                httpx.get(f"{self.base}/studies/{n}", timeout=5).json()["status"] == "completed" for n in self.names
            )
        except (httpx.HTTPError, KeyError, ValueError):
            return False

    def keep_workers_alive(self) -> None:
        """Start any worker that exited (a crash would show in its log)."""
        for worker in self.workers:
            if not worker.alive():
                worker.start()

    def answer_problems(self) -> tuple[Counter[int], list[str]]:
        """The answers by status, and those that break the contract (500; 503 with the database up)."""

        def db_was_down(moment: float) -> bool:
            return any(start <= moment <= end + DB_GRACE for start, end in self.db_down)

        statuses = Counter(status for _, status in self.answers)
        problems = [
            f"{status} at {when:.1f}"
            for when, status in self.answers
            if status >= 500 and not (status == 503 and db_was_down(when))
        ]
        return statuses, problems


class Receiver:
    """The studies' notification receiver on loopback: records each event id it is sent, and
    answers 503 while it is "down"."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.down_until = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                down = time.monotonic() < receiver.down_until
                if not down:
                    receiver.ids.append(json.loads(body)["id"])
                self.send_response(503 if down else 200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the system, inject the faults, let the studies finish, and judge."""
    per_kind, fault_seconds, max_trials = (15, 150.0, 40) if args.quick else (20, 600.0, 150)
    db = PrivatePostgres(work)
    env = {
        **os.environ,
        "HPO_DATABASE_URL": db.url,
        "HPO_DATA_DIR": str(REPO / "data"),
        "HPO_ARTIFACT_DIR": str(work / "artifacts"),
        "HPO_CACHE_DIR": str(work / "cache"),
        "HPO_HEARTBEAT_INTERVAL": "1",
        "HPO_HEARTBEAT_GRACE": "4",
        "HPO_NOTIFY_ALLOW": "127.0.0.1",  # the receiver is on loopback
        "PYTHONPATH": str(REPO),
    }
    for secret in ("HPO_API_TOKEN", "HPO_VIEWER_TOKEN"):  # the poller reads without a token
        env.pop(secret, None)
    port = free_port()
    subprocess_env = {**env, "HPO_API_URL": f"http://127.0.0.1:{port}"}
    receiver = Receiver()
    chaos = Chaos(
        db,
        receiver,
        api_service(port, subprocess_env, work),
        [],
        f"http://127.0.0.1:{port}",
        random.Random(args.seed),
        ["chaos-a", "chaos-b"],
    )
    try:
        chaos.api.start()
        wait_until_up(chaos.base + "/healthz", 60)
        for i, name in enumerate(chaos.names):
            spec = study_spec(name, max_trials, i, receiver.url)
            httpx.post(chaos.base + "/studies", json=spec, timeout=30).raise_for_status()
        chaos.workers = [worker_service(i, subprocess_env, work, slots=2) for i in range(2)]
        for worker in chaos.workers:
            worker.start()
        poller = threading.Thread(target=chaos.poll, daemon=True)
        poller.start()
        schedule = [kind for kind in KINDS for _ in range(per_kind)]
        chaos.rng.shuffle(schedule)
        started = time.monotonic()
        for number, kind in enumerate(schedule, 1):
            time.sleep(max(0.0, started + number * fault_seconds / len(schedule) - time.monotonic()))
            chaos.inject(kind)
            chaos.keep_workers_alive()
            print(f"[{time.monotonic() - started:5.0f} s] fault {number}/{len(schedule)}: {kind}", flush=True)
        drain_started = time.monotonic()
        while not chaos.finished() and time.monotonic() - drain_started < args.drain:
            chaos.keep_workers_alive()
            time.sleep(1)
        drained = time.monotonic() - drain_started
        events = chaos.deliveries(args.drain)
        chaos.polling.set()
        poller.join()
        for service in [*chaos.workers, chaos.api]:
            service.signal_group(signal.SIGTERM)
            service.wait(timeout=30)
        verdict = verify(db.url, chaos.names, max_trials)
        statuses, problems = chaos.answer_problems()
    finally:
        for service in [*chaos.workers, chaos.api]:
            service.signal_group(signal.SIGKILL)
        receiver.server.shutdown()
        db.remove()
    return {**report(chaos, verdict, statuses, problems, drained), "events": events}


def report(
    chaos: Chaos, verdict: Verdict, statuses: Counter[int], problems: list[str], drained: float
) -> dict[str, Any]:
    """Print what happened and return it for the results file."""
    print(f"faults: {dict(chaos.faults)} (total {sum(chaos.faults.values())})")
    print(f"API answers while polling: {dict(sorted(statuses.items()))}; contract broken: {problems or 'never'}")
    print(f"studies finished {drained:.0f} s after the last fault (still at work when the faults ended: {drained > 0})")
    for line in verdict.lines():
        print(line)
    return {
        "faults": dict(chaos.faults),
        "answers": {str(k): v for k, v in statuses.items()},
        "answer_problems": problems,
        "drain_seconds": drained,
        "verdict": verdict.as_dict(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 faults of each kind in 150 s (under 5 minutes)")
    parser.add_argument("--seed", type=int, default=0, help="the fault schedule's seed")
    parser.add_argument("--drain", type=float, default=150.0, help="seconds the studies get to finish after the faults")
    parser.add_argument("--keep-logs", type=Path, default=None, metavar="DIR", help="copy the processes' logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpo-chaos.") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # the cluster's folder inside belongs to the postgres user
        try:
            results = run(args, work)
        except Exception:
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name} (last lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
            raise
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in work.glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
    path = save("chaos" + ("_quick" if args.quick else ""), {**results, "seed": args.seed, "quick": args.quick})
    print(f"results: {path}")
    lost = results["verdict"]["lost"] + len(results["verdict"]["problems"]) + len(results["answer_problems"])
    events_lost = len(results["events"]["lost"])
    print(f"chaos faults {sum(results['faults'].values())} lost {results['verdict']['lost']} events lost {events_lost}")
    return 0 if lost == 0 and events_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
