"""What GET /studies costs when one study among many holds 20,000 trials.

A study's answer should cost the same whatever its number of trials. This benchmark builds 200
paused studies of 5 trials each on PostgreSQL (their dashboard plots drawn), copies that database
and adds one study of 20,000 (``--quick``: 200 and 20,000 too; the full run: 1,000 studies and
50,000 trials), then
times GET /studies through the real app on each (FastAPI's TestClient, in process), the two apps' calls alternating:

- warm: the API's tallies already counted every trial (the steady state), median of 60 calls;
- cold: the tallies and spec cache emptied before each call, as in the first call after a
  restart (the tallies' snapshots saved, as the API's sweep saves them), median of 30 calls;
- first: the same with no snapshot either (the first API ever to read this database), for the record.

It also counts the SQL statements of each call, and warns when calls ran more than a list does
(the API's sweep at work in the timed window). It ends with the line
``study_reads list warm_ratio W cold_ratio C`` (with the big study ÷ without; goal ≤ 1.2).

    python -m benchmarks.study_reads [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, delete, event, text

from benchmarks.common import save
from benchmarks.databases import create_database, database_url, drop_database, postgres_server
from benchmarks.scale_parts import prefill

SMALL_TRIALS = 5
WARM_CALLS, COLD_CALLS = 60, 30


def create_studies(url: str, names: list[str], trials: int) -> None:
    """Paused studies ``names``, each with ``trials`` COMPLETE trials written in bulk."""
    import optuna

    from service.db.database import Database
    from service.spec.schema import StudySpec
    from service.studies.lifecycle import change_status, create_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    database = Database(url)
    spec = {"dataset": {"kind": "imagefolder", "path": "cifar10-sample"}, "epochs": 3, "max_trials": 100_000}
    with database.sessions() as session:
        for name in names:
            create_study(
                session=session, storage=database.storage, spec=StudySpec.model_validate({**spec, "name": name})
            )
            change_status(session=session, name=name, action="pause")
    database.dispose()
    for name in names:
        prefill(url, name, trials, analyze=False)
    draw_dashboard_plots(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def draw_dashboard_plots(url: str) -> None:
    """Draw the studies' dashboard plots as a running service's API has drawn them: otherwise the
    timed API's sweep draws every study's for the first time while the lists are being timed."""
    from service.db.database import Database
    from service.reports.dashboard_plots import refresh_dashboard_plots
    from service.studies.read import SpecCache
    from service.studies.tallies import StudyTallies

    database = Database(url)
    refresh_dashboard_plots(database, StudyTallies(), SpecCache())
    database.dispose()


@contextmanager
def api_on(url: str) -> Iterator[Any]:
    """A TestClient of the real app on ``url`` (started: migrated, sweeper running)."""
    from fastapi.testclient import TestClient

    from service.api import create_app
    from service.settings import get_settings

    os.environ["HPO_DATABASE_URL"] = url
    os.environ.pop("HPO_API_TOKEN", None)
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client


def time_lists(clients: dict[str, Any], mode: str) -> dict[str, tuple[float, int]]:
    """Per client (without and with the big study), the median milliseconds of GET /studies in
    ``mode`` (warm, cold or first) and the statements a list ran (the fewest of any call). The two
    clients' calls alternate, so that a slow moment of the machine falls on both."""
    from service.api.app import save_tallies
    from service.db.models import TallySnapshot
    from service.studies.read import SpecCache
    from service.studies.tallies import StudyTallies

    statements: dict[str, list[str]] = {label: [] for label in clients}
    for label, client in clients.items():
        database = client.app.state.database
        event.listen(database.engine, "before_cursor_execute", lambda *a, seen=statements[label]: seen.append(a[2]))
        assert client.get("/studies").status_code == 200  # the tallies count everything once
        save_tallies(database, client.app.state.tallies)  # what the API's sweep does every 15 s
    times: dict[str, list[float]] = {label: [] for label in clients}
    counts: dict[str, list[int]] = {label: [] for label in clients}
    for _ in range(WARM_CALLS if mode == "warm" else COLD_CALLS):
        for label, client in clients.items():
            app = client.app
            if mode != "warm":  # a restarted API process
                app.state.tallies, app.state.specs = StudyTallies(), SpecCache()
            if mode == "first":
                with app.state.database.session() as session:
                    session.execute(delete(TallySnapshot))
            statements[label].clear()
            start = time.perf_counter()
            answer = client.get("/studies")
            times[label].append((time.perf_counter() - start) * 1000)
            counts[label].append(len(statements[label]))
            assert answer.status_code == 200
    for label in clients:
        check_window(mode, label, counts[label])
    return {label: (statistics.median(times[label]), min(counts[label])) for label in clients}


def check_window(mode: str, label: str, counts: list[int]) -> None:
    """Say so when calls ran more statements than the fewest any call ran (a list alone): the
    API's sweep was at work in the timed window, and those calls' times hold its work too."""
    alone = min(counts)
    crowded = sum(count > alone for count in counts)
    if crowded:
        print(
            f"warning: {crowded} of {len(counts)} {mode} calls ({label} the big study) ran more"
            f" statements than a list's {alone}: the API's sweep ran beside them"
        )


def main() -> None:
    """Build both databases, time the list on each, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="200 studies and 20,000 trials (the full run: 1,000, 50,000)"
    )
    args = parser.parse_args()
    studies, big_trials = (200, 20_000) if args.quick else (1_000, 50_000)
    server = postgres_server()
    base = create_database(server)
    bigger: str | None = None
    try:
        create_studies(database_url(server, base), [f"study-{i}" for i in range(studies)], SMALL_TRIALS)
        bigger = create_database(server, template=base)
        create_studies(database_url(server, bigger), ["big"], big_trials)
        figures: dict[str, Any] = {}
        with api_on(database_url(server, base)) as without, api_on(database_url(server, bigger)) as with_big:
            for mode in ("warm", "cold", "first"):
                for label, (ms, count) in time_lists({"without": without, "with": with_big}, mode).items():
                    figures[f"{mode}_{label}_big"] = {"median_ms": round(ms, 2), "statements": count}
                    print(f"{mode:5} {label:7} the {big_trials:,}-trial study: {ms:7.1f} ms, {count} statements")
    finally:
        for created in (base, bigger):
            if created:
                drop_database(server, created)
    ratios = {
        mode: figures[f"{mode}_with_big"]["median_ms"] / figures[f"{mode}_without_big"]["median_ms"]
        for mode in ("warm", "cold", "first")
    }
    save(
        f"study_reads{'_quick' if args.quick else ''}",
        {"studies": studies, "small_trials": SMALL_TRIALS, "big_trials": big_trials, **figures, "ratios": ratios},
    )
    print(f"(with no snapshot at all, the first read ever: ratio {ratios['first']:.2f})")
    print(f"study_reads list warm_ratio {ratios['warm']:.2f} cold_ratio {ratios['cold']:.2f}")


if __name__ == "__main__":
    main()
