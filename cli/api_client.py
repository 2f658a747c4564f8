"""The API as the ``hpo`` commands call it: HPO_API_URL, HPO_API_TOKEN, and every refusal turned
into a CliError that prints the API's own message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cli.errors import CliError, describe_errors
from service.settings import get_settings


def download(path: str, target: Path, params: dict[str, str] | None = None) -> None:
    """Stream GET ``path`` (with query ``params``) into ``target`` (written whole or not at all)."""
    partial = target.with_name(f".{target.name}.part")
    with client() as api:
        try:
            with api.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(f"GET {path} answered {response.status_code}: {explain(response)}")
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise CliError(f"cannot download {path} from {api.base_url}: {exc}") from None
    partial.replace(target)


def request(method: str, path: str, **kwargs: Any) -> Any:
    """``method path`` answered: its JSON (None for a 204); CliError for a refusal or no answer."""
    with client() as api:
        return call(api, method, path, **kwargs)


def client() -> httpx.Client:
    """A client for HPO_API_URL with HPO_API_TOKEN as its bearer token, if set."""
    settings = get_settings()
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    return httpx.Client(base_url=settings.api_url, headers=headers, timeout=60)


def call(api: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """``request`` on an open client."""
    try:
        response = api.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the API at {api.base_url} ({exc}); is `hpo serve` running? (HPO_API_URL sets the address)"
        ) from None
    if response.status_code >= 400:
        raise CliError(f"{method} {path} answered {response.status_code}: {explain(response)}")
    return None if response.status_code == 204 else response.json()


def explain(response: httpx.Response) -> str:
    """A refusal's message: the API's ``detail``, a spec's validation errors one per line."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):  # pydantic's list of validation errors
        return "invalid spec\n" + describe_errors(detail)
    return str(detail)
