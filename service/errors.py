"""The service's domain errors; the API maps each to a status code (service/api/app.py)."""

from __future__ import annotations


class StudyNotFoundError(Exception):
    """No study of that name (404)."""


class StudyExistsError(Exception):
    """A study of that name exists already (409)."""


class StudyConflictError(Exception):
    """The request clashes with the study's state, e.g. no completed trial yet (409)."""


class SpecError(ValueError):
    """The spec is well-formed but names something that does not exist or cannot serve it, e.g. an
    earlier study without a completed trial (422, like any invalid spec). ``field``: where, dotted."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
