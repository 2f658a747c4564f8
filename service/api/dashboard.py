"""optuna-dashboard inside the API process, behind the same tokens as the API.

optuna-dashboard is a WSGI app whose pages and JSON live at absolute paths (``/dashboard``,
``/api/...``, ``/static/...``, ``/csv/...``), none of which the API uses. ``DashboardGate``
sends those paths to it once the request's token allows them: a browser logs in through HTTP
Basic (the token as password), the viewer token may browse but not write (optuna-dashboard
can delete studies and tell trials), and no token is a 401 with a login prompt. Every other
path goes to the API.
"""

from __future__ import annotations

from typing import Any

from a2wsgi import WSGIMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import LOGIN_REALM, may, role_of
from service.settings import get_settings

DASHBOARD_PREFIXES = ("/dashboard", "/api/", "/static/", "/csv/")
DASHBOARD_FILES = ("/favicon.ico",)


def is_dashboard_path(path: str) -> bool:
    """Whether optuna-dashboard serves ``path``."""
    return path in DASHBOARD_FILES or path.startswith(DASHBOARD_PREFIXES)


class DashboardGate:
    """ASGI middleware in front of the API: the dashboard's paths, behind the tokens, to the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._dashboard: Any = None  # a2wsgi's WSGIMiddleware around optuna-dashboard, once built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        role = role_of(get_settings(), request.headers.get("authorization"))
        if role is None:
            refusal: Response = JSONResponse(
                {"detail": "log in with HPO_API_TOKEN or HPO_VIEWER_TOKEN as the password (any user name)"},
                status_code=401,
                headers={"WWW-Authenticate": LOGIN_REALM},
            )
        elif not may(role, request.method):
            refusal = JSONResponse({"detail": "the viewer token may only read"}, status_code=403)
        else:
            await self._app_for(scope["app"])(scope, receive, send)
            return
        await refusal(scope, receive, send)

    def _app_for(self, api: Any) -> Any:
        """optuna-dashboard on the API's storage, built at the first request (after start-up)."""
        if self._dashboard is None:
            import optuna_dashboard

            wsgi_app: Any = optuna_dashboard.wsgi(api.state.database.storage)
            self._dashboard = WSGIMiddleware(wsgi_app)
        return self._dashboard
