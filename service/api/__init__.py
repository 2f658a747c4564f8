"""The HTTP API (FastAPI). Build it with :func:`create_app`."""

from service.api.app import create_app

__all__ = ["create_app"]
