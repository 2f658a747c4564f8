"""How failures become answers: domain errors as 404/409, invalid input as 422, a database that
does not answer as 503 with Retry-After. Nothing here lets a request end in a 500 for a cause
the client can name or wait out."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import optuna
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.errors import SpecError, StudyConflictError, StudyExistsError, StudyNotFoundError

RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
log = logging.getLogger("hpo.api")


def add_error_handlers(app: FastAPI) -> None:
    """Register every mapping on ``app``."""
    for domain_error, code in ((StudyNotFoundError, 404), (StudyExistsError, 409), (StudyConflictError, 409)):
        app.add_exception_handler(domain_error, _with_detail(code))
    app.add_exception_handler(RequestValidationError, _invalid_input)
    app.add_exception_handler(SpecError, _invalid_reference)
    for outage in (*DATABASE_UNAVAILABLE, optuna.exceptions.StorageInternalError):
        app.add_exception_handler(outage, _database_unavailable)


def _with_detail(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle


async def _invalid_input(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, except that a NaN or an infinity in the echoed input does not break it."""
    assert isinstance(exc, RequestValidationError)
    errors = _json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _invalid_reference(_request: Request, exc: Exception) -> JSONResponse:
    """A spec naming a study or a file that cannot serve it: a 422 shaped like pydantic's."""
    assert isinstance(exc, SpecError)
    error = {"type": "value_error", "loc": ["body", *exc.field.split(".")], "msg": exc.message}
    return JSONResponse({"detail": [error]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings ("nan", "inf"): JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After when the database cannot be reached (Optuna's wrapper of the same, too)."""
    if isinstance(exc, optuna.exceptions.StorageInternalError) and not isinstance(exc.__cause__, DATABASE_UNAVAILABLE):
        raise exc  # a real fault, not an outage: the server error it is
    log.warning("database unavailable: %s", exc)
    return JSONResponse(
        {"detail": "the database is not answering; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
