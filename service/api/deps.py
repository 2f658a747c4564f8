"""Dependencies of the routes: settings, the database URL, and the bearer-token check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False, description="required when HPO_API_TOKEN is set")


def database_url(settings: SettingsDep) -> str:
    """The database every route works on."""
    return settings.database_url


UrlDep = Annotated[str, Depends(database_url)]


def require_token(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """When HPO_API_TOKEN is set, demand ``Authorization: Bearer <token>`` (constant-time compare)."""
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    if not secrets.compare_digest(given, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token (send 'Authorization: Bearer <HPO_API_TOKEN>')",
            headers={"WWW-Authenticate": "Bearer"},
        )
