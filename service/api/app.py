"""The FastAPI application: its Database, routes, error mapping, and the stale-trial sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.deps import DatabaseDep
from service.api.routes_studies import router as studies_router
from service.api.schemas import Health
from service.database import Database
from service.errors import StudyConflictError, StudyExistsError, StudyNotFoundError
from service.migrate import migrate
from service.settings import get_settings
from service.sweeper import sweep_stale_trials

log = logging.getLogger("hpo.api")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    database = app.state.database = Database.from_settings(settings)
    await asyncio.to_thread(migrate, database)
    sweeper = asyncio.create_task(_sweep_forever(database, settings.stale_check_interval))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        database.dispose()


async def _sweep_forever(database: Database, interval: float) -> None:
    """Fail and re-queue heartbeat-stale trials even when no worker is starting trials."""
    while True:
        try:
            await asyncio.to_thread(sweep_stale_trials, database)
        except Exception:  # the database may be restarting; try again next round
            log.exception("stale-trial sweep failed")
        await asyncio.sleep(interval)


def create_app() -> FastAPI:
    """Build the API. On start it connects, migrates the database (idempotent) and starts the sweeper."""
    app = FastAPI(
        title="hpo",
        version="0.1.0",
        lifespan=_lifespan,
        description="Distributed hyperparameter search for image models.",
    )
    app.include_router(studies_router)

    @app.get("/healthz", response_model=Health, tags=["health"])
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

    for error, code in ((StudyNotFoundError, 404), (StudyExistsError, 409), (StudyConflictError, 409)):
        app.add_exception_handler(error, _handler(code))
    return app


def _handler(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle
