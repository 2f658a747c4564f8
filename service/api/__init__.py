"""The HTTP API (FastAPI), the top layer: it may import every other part of the service, never
worker/ or training code. Build it with :func:`create_app`."""

from service.api.app import create_app

__all__ = ["create_app"]
