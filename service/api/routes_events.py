"""``GET /studies/{name}/events``: the notifications a study raised and how their delivery went
(service/notify)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from service.api.deps import SessionDep, authorize
from service.api.schemas import answers
from service.notify.outbox import events_of
from service.studies.trials import study_spec

router = APIRouter(
    prefix="/studies", tags=["studies"], dependencies=[Depends(authorize)], responses=answers(401, 403, 503)
)


class EventOut(BaseModel):
    """One event sent to one receiver."""

    id: str  # the event's id, the same for every receiver and retry: receivers drop duplicates by it
    event: str
    url: str
    status: str  # pending, delivered, failed (gave up after 24 hours)
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    body: dict[str, Any]  # what the receiver gets


@router.get("/{name}/events", response_model=list[EventOut], responses=answers(404))
def study_events(
    name: str, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The study's latest events, newest first, each receiver's delivery with its attempts."""
    study_spec(session=session, name=name)  # 404 for an unknown study
    return events_of(session, name, limit)
