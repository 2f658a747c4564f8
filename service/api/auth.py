"""Who may do what: the admin token (HPO_API_TOKEN) may do everything, the viewer token
(HPO_VIEWER_TOKEN) may only read. With no admin token set, authentication is off.

A token comes as ``Authorization: Bearer <token>`` (scripts, the CLI) or as the password of
HTTP Basic (a browser's login prompt for the dashboard; any user name). Tokens are compared
in constant time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import secrets

from service.settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_REALM = 'Basic realm="hpo dashboard", charset="UTF-8"'  # a browser's 401 challenge: it asks for the token


class Role(enum.Enum):
    """What a request may do."""

    ADMIN = "admin"  # everything
    VIEWER = "viewer"  # reads only


def role_of(settings: Settings, authorization: str | None) -> Role | None:
    """The role the ``Authorization`` header's token grants; None when it grants nothing."""
    if settings.api_token is None:
        return Role.ADMIN  # authentication is off
    given = _token(authorization or "").encode()
    if secrets.compare_digest(given, settings.api_token.get_secret_value().encode()):
        return Role.ADMIN
    viewer = settings.viewer_token
    if viewer is not None and secrets.compare_digest(given, viewer.get_secret_value().encode()):
        return Role.VIEWER
    return None


def may(role: Role, method: str) -> bool:
    """Whether ``role`` may send a request with this HTTP method."""
    return role is Role.ADMIN or method.upper() in READ_METHODS


def _token(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]  # user:password; the password is the token
    return ""
