"""The FastAPI application: its Database, routes, error mapping, and the stale-trial sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from service.api.dashboard import DashboardGate
from service.api.deps import DatabaseDep
from service.api.errors import add_error_handlers
from service.api.routes_catalogue import router as catalogue_router
from service.api.routes_events import router as events_router
from service.api.routes_export import router as export_router
from service.api.routes_reports import router as reports_router
from service.api.routes_studies import router as studies_router
from service.api.schemas import Health
from service.db.database import Database
from service.db.migrate import migrate_from_settings
from service.db.retry import TRANSIENT_ERRORS, call_with_retry
from service.notify.dispatcher import deliver_due
from service.reports.dashboard_plots import refresh_dashboard_plots
from service.scheduling.stopping import sweep_stop_rules
from service.scheduling.sweeper import sweep_stale_trials
from service.settings import get_settings
from service.studies.cleanup import finish_interrupted, remove_orphans
from service.studies.read import SpecCache
from service.studies.tallies import StudyTallies

log = logging.getLogger("hpo.api")
DISPATCH_EVERY_S = 1.0  # how often the API looks for notifications due
MAX_BODY_BYTES = 1_000_000  # a study spec is a few kilobytes; a thousand enqueued configs fit easily


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    database = app.state.database = Database.from_settings(settings, role="api")
    app.state.tallies = StudyTallies()  # trial counts for GET /studies, read incrementally
    app.state.specs = SpecCache()  # specs for GET /studies, decoded once
    await asyncio.to_thread(call_with_retry, migrate_from_settings, settings)  # a restarting database is waited for
    await asyncio.to_thread(call_with_retry, lambda: database.storage)  # built now, before requests share the pool
    # What start-up built lives as long as the process: out of the collector's way, a full
    # collection takes about 1 ms instead of 80-100 (130,000 objects), which was a request's tail.
    # Collect first: garbage frozen is never freed, and garbage can hold a pooled connection.
    gc.collect()
    gc.freeze()
    sweeps = _sweeps(database, app.state.tallies, app.state.specs)
    sweeper = asyncio.create_task(_sweep_forever(sweeps, settings.stale_check_interval))
    # the notifications' dispatcher: its own loop, so that a slow receiver holds up no sweep
    notifier = Database.from_settings(settings, role="notify")
    dispatcher = asyncio.create_task(_sweep_forever({"notifications": lambda: deliver_due(notifier)}, DISPATCH_EVERY_S))
    try:
        yield
    finally:
        gc.unfreeze()  # the process may go on (tests, an API served in a thread): collect as usual again
        for task in (sweeper, dispatcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # a cache: a database that is down now costs the next start a read
            await asyncio.to_thread(save_tallies, database, app.state.tallies)
        database.dispose()
        notifier.dispose()


def save_tallies(database: Database, tallies: StudyTallies) -> int:
    """Save what the tallies counted since their last save (service/studies/tallies.py)."""
    with database.sessions() as session:
        return tallies.save(session)


def _sweeps(database: Database, tallies: StudyTallies, specs: SpecCache) -> dict[str, Callable[[], object]]:
    """What the API does every few seconds: fail and re-queue heartbeat-stale trials even when no
    worker is starting trials, finish off studies a POST or DELETE left half-done, save the tallies'
    snapshots, complete the studies a stopping rule ends (the clock runs when no trial finishes), and
    redraw the dashboard's learning curves of studies with new complete trials."""
    artifact_root = get_settings().artifact_dir
    return {
        "stale trial sweep": lambda: sweep_stale_trials(database),
        "interrupted create/delete sweep": lambda: finish_interrupted(database, artifact_root),
        "orphan sweep": lambda: remove_orphans(database, artifact_root),
        "tally snapshot": lambda: save_tallies(database, tallies),
        "stopping rules": lambda: sweep_stop_rules(database),
        "dashboard plots": lambda: refresh_dashboard_plots(database, tallies, specs),
    }


async def _sweep_forever(sweeps: dict[str, Callable[[], object]], interval: float) -> None:
    """Run each sweep, every ``interval`` seconds.

    While the database does not answer, a sweep says so once (a line, no traceback) and again
    when it is back: the dispatcher runs every second, and logged a traceback each time.
    """
    waiting: set[str] = set()  # sweeps whose last run found the database unavailable
    while True:
        for name, sweep in sweeps.items():
            try:
                await asyncio.to_thread(sweep)
            except TRANSIENT_ERRORS as exc:  # the database may be restarting; try again next round
                if name not in waiting:
                    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
                    log.warning("%s: database unavailable (%s); retrying every %g s", name, reason, interval)
                    waiting.add(name)
                continue
            except Exception:
                log.exception("%s failed", name)
                continue
            if name in waiting:
                waiting.discard(name)
                log.info("%s: database available again", name)
        await asyncio.sleep(interval)


def create_app() -> FastAPI:
    """Build the API. On start it connects, migrates the database (idempotent) and starts the sweeper."""
    app = FastAPI(
        title="hpo",
        version="0.1.0",
        lifespan=_lifespan,
        description="Distributed hyperparameter search for image models.",
        generate_unique_id_function=lambda route: route.name,  # operationIds a generated client can use
    )
    app.include_router(export_router)
    app.include_router(studies_router)
    app.include_router(catalogue_router)
    app.include_router(reports_router)
    app.include_router(events_router)
    app.add_middleware(DashboardGate)  # optuna-dashboard's paths, behind the tokens
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=MAX_BODY_BYTES)  # 413 before parsing

    @app.get("/healthz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def healthz(database: DatabaseDep) -> JSONResponse:
        """Whether the database answers (no token needed)."""
        try:
            with database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse(
                {"status": "error", "database": type(exc).__name__}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    add_error_handlers(app)
    return app
