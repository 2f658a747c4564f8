"""Writing events to the outbox: a row per receiver that wants the event, added to the caller's
session so that it commits with the change it reports, or not at all. service/notify/dispatcher.py
delivers them.

The body is what the receiver gets: ``{"id", "event", "study", "at", "data"}`` (JSON), or for a
``slack`` receiver ``{"text", "id"}``. ``id`` is the event's, the same for every receiver and every
retry: a receiver drops duplicates by it (delivery is at least once).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import OutboxEvent
from service.settings import get_settings
from service.spec.notify import EventName, NotifyTarget

NEW_BEST_EVERY = timedelta(minutes=1)  # at most one study.new_best a minute per study


def emit(session: Session, *, study: str, spec: Mapping[str, Any], event: EventName, data: dict[str, Any]) -> int:
    """Add the event for every receiver of the study's ``notify`` (and HPO_NOTIFY_URL) that wants
    it; returns how many. The caller commits, with the change the event reports."""
    targets = [NotifyTarget.model_validate(target) for target in spec.get("notify") or []]
    default = get_settings().notify_url
    if default:
        targets.append(NotifyTarget(url=default))
    wanted = [target for target in targets if event in target.events]
    if not wanted:
        return 0
    now = datetime.now(UTC)
    payload = {"id": str(uuid.uuid4()), "event": event, "study": study, "at": now.isoformat(), "data": data}
    for target in wanted:
        body = payload if target.format == "json" else {"text": _sentence(payload), "id": payload["id"]}
        session.add(
            OutboxEvent(
                event_id=payload["id"],
                study_name=study,
                event=event,
                url=target.url,
                body=json.dumps(body),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(wanted)


def new_best_due(session: Session, study: str) -> bool:
    """Whether a study.new_best may be emitted now (none for this study in the last minute)."""
    since = datetime.now(UTC) - NEW_BEST_EVERY
    recent = select(OutboxEvent.id).where(
        OutboxEvent.study_name == study, OutboxEvent.event == "study.new_best", OutboxEvent.created_at >= since
    )
    return session.execute(recent.limit(1)).first() is None


def _sentence(payload: Mapping[str, Any]) -> str:
    """The event as a line for a chat channel."""
    details = ", ".join(f"{key} {value}" for key, value in payload["data"].items())
    return f"hpo: {payload['event']} for study {payload['study']}" + (f": {details}" if details else "")


def events_of(session: Session, study: str, limit: int) -> list[dict[str, Any]]:
    """The study's latest ``limit`` events, one entry per receiver, newest first, with their delivery state."""
    rows = session.execute(
        select(OutboxEvent).where(OutboxEvent.study_name == study).order_by(OutboxEvent.id.desc()).limit(limit)
    ).scalars()
    return [
        {
            "id": row.event_id,
            "event": row.event,
            "url": row.url,
            "status": row.status,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "next_attempt_at": row.next_attempt_at,
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
            "body": json.loads(row.body),
        }
        for row in rows
    ]
