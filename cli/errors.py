"""Turning expected failures into one clear line on stderr and a non-zero exit."""

from __future__ import annotations

from pydantic import ValidationError


class CliError(Exception):
    """A failure the user can fix; printed without a traceback."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: 'field.path: message'."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part not in ("searched", "fixed"))
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)
