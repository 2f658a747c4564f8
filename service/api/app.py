"""The FastAPI application: routes, error mapping, and the stale-trial sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.deps import UrlDep
from service.api.routes_studies import router as studies_router
from service.api.schemas import Health
from service.database import StudyExistsError, get_engine, normalise_url
from service.migrate import migrate
from service.settings import get_settings
from service.studies import StudyConflictError, StudyNotFoundError
from service.sweeper import sweep_stale_trials

log = logging.getLogger("hpo.api")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    await run_in_threadpool(migrate, settings.database_url)
    sweeper = asyncio.create_task(_sweep_forever(settings.database_url, settings.stale_check_interval))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


async def _sweep_forever(url: str, interval: float) -> None:
    """Fail and re-queue heartbeat-stale trials even when no worker is starting trials."""
    while True:
        try:
            await run_in_threadpool(sweep_stale_trials, url)
        except Exception:  # the database may be restarting; try again next round
            log.exception("stale-trial sweep failed")
        await asyncio.sleep(interval)


def create_app() -> FastAPI:
    """Build the API. On start it migrates the database (idempotent) and starts the sweeper."""
    app = FastAPI(
        title="hpo",
        version="0.1.0",
        lifespan=_lifespan,
        description="Distributed hyperparameter search for image models.",
    )
    app.include_router(studies_router)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz(url: UrlDep) -> JSONResponse:
        """Whether the database answers (no token needed)."""
        try:
            await run_in_threadpool(_ping, url)
        except Exception as exc:
            return JSONResponse(
                {"status": "error", "database": type(exc).__name__}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    for error, code in ((StudyNotFoundError, 404), (StudyExistsError, 409), (StudyConflictError, 409)):
        app.add_exception_handler(error, _handler(code))
    return app


def _ping(url: str) -> None:
    with get_engine(normalise_url(url)).connect() as connection:
        connection.execute(text("SELECT 1"))


def _handler(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle
