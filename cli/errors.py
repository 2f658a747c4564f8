"""Turning expected failures into one clear message on stderr and a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Parts of pydantic's error locations that name no field: the request body, and the tags of
# a search-space entry's union (service.spec.space.SpaceEntry).
_NOT_FIELDS = ("body", "searched", "fixed")


class CliError(Exception):
    """A failure the user can fix; printed without a traceback."""


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line per validation error, ``  field.path: message``.

    Takes pydantic's ``ValidationError.errors()`` or the ``detail`` list of an API 422 answer
    (the same dictionaries, sent as JSON).
    """
    lines = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in _NOT_FIELDS)
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)
