"""Dependencies of the routes: settings, the database, a session, Optuna's storage, the token check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from optuna.storages import RDBStorage
from sqlalchemy.orm import Session

from service.api.auth import LOGIN_REALM, Role, may, role_of
from service.db.database import Database
from service.settings import Settings, get_settings
from service.studies.read import SpecCache
from service.studies.tallies import StudyTallies

SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False, description="required when HPO_API_TOKEN is set")


def get_database(request: Request) -> Database:
    """The app's Database, built when it started (service.api.app)."""
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    """A session for one request; data functions commit what they write, the rest is rolled back."""
    with database.sessions() as session:
        yield session


def get_tallies(request: Request) -> StudyTallies:
    """The app's running trial counts per study (service.studies.tallies), kept for GET /studies."""
    tallies: StudyTallies = request.app.state.tallies
    return tallies


TalliesDep = Annotated[StudyTallies, Depends(get_tallies)]


def get_specs(request: Request) -> SpecCache:
    """The app's decoded specs by study (service.studies.read), kept for GET /studies."""
    specs: SpecCache = request.app.state.specs
    return specs


SpecsDep = Annotated[SpecCache, Depends(get_specs)]


def get_storage(database: DatabaseDep) -> RDBStorage:
    """Optuna's storage on the app's database."""
    return database.storage


SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[RDBStorage, Depends(get_storage)]


def authorize(
    request: Request,
    settings: SettingsDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Role:
    """The request's role: 401 without a valid token (when HPO_API_TOKEN is set), 403 for a
    viewer's write. (``_credentials`` only documents the scheme in the OpenAPI schema.)"""
    return _role(request, settings, challenge="Bearer")


def authorize_page(
    request: Request,
    settings: SettingsDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Role:
    """``authorize`` for the pages a browser opens (the reports): its 401 asks the browser to log
    in, the token as the password, as the dashboard's does."""
    return _role(request, settings, challenge=LOGIN_REALM)


def _role(request: Request, settings: Settings, challenge: str) -> Role:
    role = role_of(settings, request.headers.get("authorization"))
    if role is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token (send 'Authorization: Bearer <HPO_API_TOKEN>')",
            headers={"WWW-Authenticate": challenge},
        )
    if not may(role, request.method):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the viewer token may only read")
    return role
