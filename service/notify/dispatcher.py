"""Delivering the outbox (service/notify/outbox.py): the API runs ``deliver_due`` every couple of
seconds. Each due row is locked while it is sent (``FOR UPDATE SKIP LOCKED``), so of several API
processes one sends a given attempt and the others pass over it. A receiver that does not answer
2xx is tried again later, the wait doubling from 5 s to an hour, for 24 hours; every attempt is
recorded on the row (``attempts``, ``last_error``). Redirects are not followed: a receiver's
address is the one checked (service/notify/targets.refusal, at every attempt).

The body is signed when HPO_NOTIFY_SECRET is set: ``X-HPO-Signature: sha256=<hex>``, the
HMAC-SHA256 of the body's bytes with the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from service.db.database import Database
from service.db.models import OutboxEvent
from service.notify.targets import refusal
from service.settings import Settings, get_settings

BATCH = 20  # rows sent per call
TIMEOUT_S = 5.0
RETRY_FOR = timedelta(hours=24)
FIRST_WAIT_S, LONGEST_WAIT_S = 5.0, 3600.0


def deliver_due(database: Database, client: httpx.Client | None = None) -> int:
    """Send the due rows, at most ``BATCH``; returns how many were delivered."""
    settings = get_settings()
    now = datetime.now(UTC)
    delivered = 0
    with database.session() as session, client or httpx.Client(timeout=TIMEOUT_S) as http:
        due = (
            select(OutboxEvent)
            .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= now)
            .order_by(OutboxEvent.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        for row in session.execute(due).scalars().all():
            delivered += _attempt(row, http, settings)
    return delivered


def signature(body: bytes, secret: str) -> str:
    """The X-HPO-Signature of ``body``: ``sha256=`` and the hex HMAC-SHA256 with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _attempt(row: OutboxEvent, http: httpx.Client, settings: Settings) -> int:
    """Send one row once and record the attempt on it; 1 if delivered."""
    now = datetime.now(UTC)
    row.attempts += 1
    error = _send(row, http, settings)
    if error is None:
        row.status, row.delivered_at, row.last_error = "delivered", now, None
        return 1
    row.last_error = error[:600]
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    if now - created >= RETRY_FOR:
        row.status = "failed"
    else:
        wait = min(FIRST_WAIT_S * 2 ** (row.attempts - 1), LONGEST_WAIT_S)
        row.next_attempt_at = now + timedelta(seconds=wait)
    return 0


def _send(row: OutboxEvent, http: httpx.Client, settings: Settings) -> str | None:
    """POST the row's body; None if the receiver answered 2xx, else why not."""
    refused = refusal(row.url, settings.notify_allow)
    if refused is not None:
        return f"refused: {refused}"
    body = row.body.encode()
    headers = {"Content-Type": "application/json", "X-HPO-Event": row.event, "X-HPO-Event-Id": row.event_id}
    if settings.notify_secret is not None:
        headers["X-HPO-Signature"] = signature(body, settings.notify_secret.get_secret_value())
    try:
        answer = http.post(row.url, content=body, headers=headers, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= answer.status_code < 300 else f"answered {answer.status_code}"
