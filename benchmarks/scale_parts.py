"""The pieces of benchmarks/scale.py: light worker slots, a prefilled study, a PgBouncer, the
read load on the API, and a watch on the server's connections."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from cli.local_api import free_port


@dataclass(frozen=True)
class ZeroResult:
    """What objectives.train returns, without training (and without importing torch)."""

    val_accuracy: float = 0.3
    test_accuracy: float = 0.3
    images_per_second: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The metrics a trial records."""
        return {"val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy}


class ZeroTrain:
    """Three reported epochs that cost no CPU: each lasts ``trial_seconds / 3`` of sleep, as a
    slot waits on its GPU, so that many slots on a small machine measure the database, not a run
    queue of Python processes."""

    def __init__(self, trial_seconds: float) -> None:
        self.epoch_seconds = trial_seconds / 3

    def __call__(self, _data: Any, _config: Any, *, report: Any, **_: Any) -> ZeroResult:
        for epoch in (1, 2, 3):
            time.sleep(self.epoch_seconds)
            report(epoch, 0.1 * epoch)
        return ZeroResult()


def _no_data(*_: Any, **__: Any) -> None:
    return None


def slot_process(url: str, index: int, trial_seconds: float, ready: Any, stop: Any, results: Any) -> None:
    """One worker slot: the real loop (survey, study lock, budget, heartbeats), training replaced
    by a zero-cost objective. Puts (time, study, claim seconds, claimed) per claim on ``results``."""
    os.environ["HPO_DATABASE_URL"] = url
    import warnings

    import optuna

    from service.settings import get_settings

    get_settings.cache_clear()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import worker.slot_loop as slot_loop
    from service.db.database import Database
    from worker.objective import TrialObjective
    from worker.slots import SlotConfig, TrialQuota

    claims: list[tuple[float, str, float, bool]] = []
    real_claim = slot_loop.claim_trial

    def timed_claim(db: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        claim = real_claim(db, name, *args, **kwargs)
        claims.append((time.time(), name, time.perf_counter() - began, claim is not None))
        return claim

    class ZeroCost(TrialObjective):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs, load_fn=_no_data, train_fn=ZeroTrain(trial_seconds))

    slot_loop.claim_trial = timed_claim
    slot = SlotConfig(index=index, device="cpu", cuda_visible="", threads=1, study=None, burst=False, poll_seconds=0.2)
    settings = get_settings()
    database = Database.from_settings(settings, role="worker")  # as worker.child_process builds it
    loop = slot_loop.SlotLoop(slot, database, settings, stop, TrialQuota(None, None), "cpu")
    loop.objective_class = ZeroCost
    ready.put(os.getpid())
    error = None
    try:
        loop.run()
    except Exception as exc:  # reported, not raised: the benchmark counts errors
        error = f"{type(exc).__name__}: {exc}"
    database.dispose()
    results.put((claims, error))


def prefill(url: str, study_name: str, count: int, *, analyze: bool = True) -> None:
    """Give a study ``count`` COMPLETE trials (a parameter, a value, 3 reports each) in bulk SQL,
    numbered 0..count-1 as Optuna numbers them; then VACUUM ANALYZE, unless ``analyze`` is False."""
    from optuna.distributions import FloatDistribution, distribution_to_json

    dist = distribution_to_json(FloatDistribution(1e-4, 1e-1, log=True))
    engine = create_engine(url)
    with engine.begin() as connection:
        sid = connection.execute(text("SELECT study_id FROM studies WHERE study_name = :n"), {"n": study_name}).scalar()
        of_study = "FROM trials WHERE study_id = :s"
        statements = [
            "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
            "SELECT g, :s, 'COMPLETE', now(), now() FROM generate_series(0, :n - 1) g",
            "INSERT INTO trial_values (trial_id, objective, value, value_type) "
            f"SELECT trial_id, 0, random(), 'FINITE' {of_study}",
            f"INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
            f"SELECT trial_id, 'lr', 0.001, :d {of_study}",
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, intermediate_value_type) "
            "SELECT trial_id, s, random(), 'FINITE' FROM trials, generate_series(1, 3) s WHERE study_id = :s",
        ]
        for statement in statements:
            connection.execute(text(statement), {"s": sid, "n": count, "d": dist})
    if not analyze:
        engine.dispose()
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


class PgBouncerProcess:
    """Debian's pgbouncer in transaction mode in front of ``server_port``, on a free port."""

    def __init__(self, work: Path, server_port: int, pool_size: int = 40) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.dir = work / "pgbouncer"
        self.dir.mkdir()
        self.port = free_port()
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={server_port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {self.dir}/users.txt\n"
            f"pool_mode = transaction\nmax_client_conn = 2000\ndefault_pool_size = {pool_size}\n"
            f"logfile = {self.dir}/pgbouncer.log\n"
        )
        run_as = []
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        self.proc = subprocess.Popen([*run_as, binary, str(self.dir / "pgbouncer.ini")])
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {(self.dir / 'pgbouncer.log').read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop it."""
        self.proc.terminate()
        self.proc.wait(timeout=20)


class ConnectionWatch(threading.Thread):
    """Samples pg_stat_activity every quarter second: the peak number of client connections, in
    all and per application_name (hpo-worker, hpo-api, ...; "unnamed": Optuna's own short-lived
    engines, and through PgBouncer whatever it has not yet told the name of)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url, pool_size=1, connect_args={"application_name": "scale-watch"})
        self.peak_total = 0
        self.peak_by_kind: dict[str, int] = defaultdict(int)
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until ``done`` is set."""
        query = text(
            "SELECT coalesce(nullif(application_name, ''), 'unnamed'), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND application_name <> 'scale-watch' GROUP BY 1"
        )
        while not self.done.wait(0.25):
            with self.engine.connect() as connection:
                counts: dict[str, int] = {str(kind): int(n) for kind, n in connection.execute(query).all()}
            self.peak_total = max(self.peak_total, sum(counts.values()))
            for kind, count in counts.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind[kind], count)
        self.engine.dispose()


class ReadLoad(threading.Thread):
    """One client reading the API, one request every ``interval`` seconds (a dashboard user, not a
    flood): the last page of the big study's trials, the study list, and the big study's best
    trial in turn. Latencies per endpoint; any answer but 200 is an error."""

    def __init__(self, base: str, big: str, big_trials: int, stop: threading.Event, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.urls = {
            "trials_page": f"{base}/studies/{big}/trials?offset={max(0, big_trials - 50)}&limit=50",
            "studies": f"{base}/studies",
            "best": f"{base}/studies/{big}/best",
        }
        self.stop = stop
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    def run(self) -> None:
        """Read until stopped."""
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                for kind, url in self.urls.items():
                    began = time.perf_counter()
                    answer = client.get(url)
                    took = time.perf_counter() - began
                    self.latencies[kind].append(took)
                    if answer.status_code != 200:
                        self.errors.append(f"{kind}: {answer.status_code} {answer.text[:200]}")
                    self.stop.wait(max(0.0, self.interval - took))


def p(values: list[float], percent: int) -> float:
    """The ``percent``-th percentile of ``values`` in milliseconds (0 if there are none)."""
    if len(values) < 2:
        return 1000 * (values[0] if values else 0.0)
    return 1000 * statistics.quantiles(values, n=100)[percent - 1]
