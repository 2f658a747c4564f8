"""The service's domain errors; the API maps each to a status code (service/api/app.py)."""

from __future__ import annotations


class StudyNotFoundError(Exception):
    """No study of that name (404)."""


class StudyExistsError(Exception):
    """A study of that name exists already (409)."""


class StudyConflictError(Exception):
    """The request clashes with the study's state, e.g. no completed trial yet (409)."""
