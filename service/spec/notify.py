"""``notify``: where a study's notifications go, and which events each receiver wants
(service/notify delivers them; its targets.py checks the addresses)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from objectives.strict import StrictModel

EventName = Literal["study.completed", "study.paused", "study.new_best", "trial.failed"]
EVENTS: tuple[EventName, ...] = ("study.completed", "study.paused", "study.new_best", "trial.failed")


class NotifyTarget(StrictModel):
    """One receiver: its URL, the events it wants, and the body's format."""

    url: str = Field(max_length=2000)
    events: list[EventName] = Field(default_factory=lambda: list(EVENTS), min_length=1, max_length=len(EVENTS))

    @field_validator("events")
    @classmethod
    def _once_each(cls, events: list[EventName]) -> list[EventName]:
        if len(set(events)) < len(events):
            raise ValueError("name each event once")
        return events

    format: Literal["json", "slack"] = "json"

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url
