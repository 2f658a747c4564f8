"""Scale: many worker slots on one PostgreSQL (max_connections 100), the API under read load.

    python -m benchmarks.scale [--quick] [--pgbouncer]

It starts its own PostgreSQL cluster (the local PostgreSQL binaries) with max_connections 100,
creates a study prefilled with 50,000 finished trials (20,000 with --quick), an empty one, and
198 paused ones for the list, then runs 64 light worker slots (16 with --quick: the real worker
loop, training replaced by a zero-cost objective, so a slot costs no torch import; each trial
sleeps --trial-seconds, 3 by default, as a slot waits on its GPU) and the API
(``hpo serve``) with 4 clients, each reading every half second the big study's last page of
trials, the study list or the best trial, all at once. After a warm-up it measures for a while
and reports:

- peak connections to the server, in all and by process kind (application_name);
- trials per second, and claim p50/p95 per study (the whole claim: lock wait, budget check,
  creating or popping the trial, commit);
- p50 and p95 latency of each read, and every error (a non-200 answer, a slot that died).

``--pgbouncer`` puts a PgBouncer (transaction mode, 40 server connections) between everything
and the server; migrations go direct. Ends with
``scale slots N conns C claim_p95_ms P trials_page_p95_ms T``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.chaos_cluster import PrivatePostgres, api_service, wait_until_up
from benchmarks.common import REPO, save, table
from benchmarks.scale_parts import ConnectionWatch, PgBouncerProcess, ReadLoad, p, prefill, slot_process
from cli.local_api import free_port

BIG, FRESH = "big", "fresh"
READERS = 4


def create_studies(url: str, big_trials: int, listed: int) -> None:
    """The big (prefilled) and fresh studies, open-ended, and ``listed`` paused ones."""
    import optuna

    from service.db.database import Database
    from service.db.migrate import migrate
    from service.spec.schema import StudySpec
    from service.studies.lifecycle import change_status, create_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study created
    database = Database(url)
    migrate(database)
    base = {
        "dataset": {"kind": "imagefolder", "path": "cifar10-sample"},
        "epochs": 3,
        "sampler": {"name": "random"},
        "pruner": {"name": "none"},
        "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}, "batch_size": 128},
    }
    names = [BIG, FRESH, *(f"listed-{i}" for i in range(listed))]
    with database.sessions() as session:
        for name in names:
            spec = StudySpec.model_validate({**base, "name": name, "max_trials": 100_000})  # the cap
            create_study(session=session, storage=database.storage, spec=spec)
        for name in names[2:]:
            change_status(session=session, name=name, action="pause")
    database.dispose()
    prefill(url, BIG, big_trials)


def measure(client_url: str, server_url: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run the slots, the API and the readers; return what was measured after the warm-up."""
    slots, big_trials, seconds = args.slots, args.big_trials, args.seconds
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    watch = ConnectionWatch(server_url)
    watch.start()
    port = free_port()
    env = {**os.environ, "HPO_DATABASE_URL": client_url, "HPO_MIGRATE_DATABASE_URL": server_url}
    env["HPO_DATA_DIR"] = str(REPO / "data")
    api = api_service(port, env, work)
    api.start()
    slot_args = [(client_url, i, args.trial_seconds, ready, stop, results) for i in range(slots)]
    procs = [ctx.Process(target=slot_process, args=one) for one in slot_args]
    readers_stop = threading.Event()
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=600)
        wait_until_up(f"http://127.0.0.1:{port}/healthz", 120)
        readers = [ReadLoad(f"http://127.0.0.1:{port}", BIG, big_trials, readers_stop) for _ in range(READERS)]
        for reader in readers:
            reader.start()
        warm_up = 30 if slots <= 16 else 60
        print(f"scale: {slots} slots and {READERS} readers running; warm-up {warm_up} s, then {seconds:.0f} s measured")
        time.sleep(warm_up)
        for reader in readers:  # the readers' figures start now too
            reader.latencies.clear()
        began = time.time()
        time.sleep(seconds)
        ended = time.time()
        readers_stop.set()
        stop.set()
        outcomes = [results.get(timeout=300) for _ in procs]
    finally:  # whatever happened, nothing outlives the run
        readers_stop.set()
        stop.set()
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        api.signal_group(signal.SIGTERM)
        api.wait(30)
        watch.done.set()
        watch.join()
    claims = [c for claimed, _ in outcomes for c in claimed if began <= c[0] <= ended]
    return {
        "slots": slots,
        "seconds": ended - began,
        "peak_connections": watch.peak_total,
        "peak_by_kind": dict(watch.peak_by_kind),
        "trials_per_s": sum(1 for c in claims if c[3]) / (ended - began),
        "claims": {
            study: {
                "n": len(durations := [c[2] for c in claims if c[1] == study and c[3]]),
                "p50_ms": p(durations, 50),
                "p95_ms": p(durations, 95),
            }
            for study in (BIG, FRESH)
        },
        "reads_p50_ms": {kind: p([x for r in readers for x in r.latencies[kind]], 50) for kind in readers[0].urls},
        "reads_p95_ms": {kind: p([x for r in readers for x in r.latencies[kind]], 95) for kind in readers[0].urls},
        "reads": sum(len(v) for r in readers for v in r.latencies.values()),
        "errors": [e for r in readers for e in r.errors] + [error for _, error in outcomes if error],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 slots, 20,000 trials, 60 s measured")
    parser.add_argument("--pgbouncer", action="store_true", help="everything through PgBouncer (transaction mode)")
    parser.add_argument("--slots", type=int, help="override the number of slots")
    parser.add_argument("--trial-seconds", type=float, default=3.0, help="sleep per trial, 0: back to back")
    args = parser.parse_args()
    args.slots = args.slots or (16 if args.quick else 64)
    args.big_trials, args.seconds = (20_000, 60.0) if args.quick else (50_000, 120.0)
    big_trials = args.big_trials
    work = Path(tempfile.mkdtemp(prefix="hpo-scale."))
    work.chmod(0o755)  # the cluster and PgBouncer run as the postgres user below it
    server = PrivatePostgres(work, max_connections=100)
    bouncer = None
    try:
        print(f"scale: preparing {big_trials:,} trials and 200 studies on a private PostgreSQL (max_connections 100)")
        create_studies(server.url, big_trials, listed=198)
        client_url = server.url
        if args.pgbouncer:
            bouncer = PgBouncerProcess(work, server.port)
            client_url = server.url.replace(f":{server.port}/", f":{bouncer.port}/")
        result = measure(client_url, server.url, args, work)
    finally:
        if bouncer is not None:
            bouncer.stop()
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    report(result, big_trials, args)


def report(result: dict[str, Any], big_trials: int, args: argparse.Namespace) -> None:
    """Print the figures, save them, and end with the one-line summary."""
    claims, reads, typical = result["claims"], result["reads_p95_ms"], result["reads_p50_ms"]
    columns = ["what", "count", "p50 ms", "p95 ms"]
    rows = [
        dict(zip(columns, [f"claim on {study} ({n:,} trials before)", c["n"], c["p50_ms"], c["p95_ms"]], strict=True))
        for (study, c), n in zip(claims.items(), (big_trials, 0), strict=True)
    ]
    rows += [{"what": f"GET {kind}", "p50 ms": typical[kind], "p95 ms": ms} for kind, ms in reads.items()]
    print(table(rows, columns))
    print(
        f"peak connections {result['peak_connections']} (by kind: {result['peak_by_kind']}); "
        f"{result['trials_per_s']:.1f} trials/s; {result['reads']} reads; errors: {len(result['errors'])}"
    )
    for error in result["errors"][:10]:
        print("  error:", error)
    mode = "pgbouncer" if args.pgbouncer else ("quick" if args.quick else "full")
    settings = {"big_trials": big_trials, "pgbouncer": args.pgbouncer, "trial_seconds": args.trial_seconds}
    path = save(f"scale_{mode}", {**settings, **result})
    print(f"saved {path.relative_to(REPO)}")
    claim_p95 = max(c["p95_ms"] for c in claims.values())
    print(
        f"scale slots {result['slots']} conns {result['peak_connections']} claim_p95_ms {claim_p95:.1f} "
        f"trials_page_p95_ms {reads['trials_page']:.1f}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
