"""Response models of the API (requests use service.spec.StudySpec directly)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.settings import get_settings
from service.studies import StudyView


class StudyOut(BaseModel):
    """A study with its progress. ``finished`` counts as the budget counts."""

    name: str
    status: str
    spec: dict[str, Any]
    max_trials: int
    priority: int
    finished: int  # COMPLETE + PRUNED + FAIL that was not retried
    slots_taken: int  # trials started or queued, retries not counted again
    counts: dict[str, int]  # complete, pruned, fail, running, waiting
    best_value: float | None
    dashboard_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: StudyView) -> StudyOut:
        """Build from the data layer's view of a study."""
        record, progress = view.record, view.progress
        settings = get_settings()
        base = (settings.dashboard_url or settings.api_url).rstrip("/")
        return cls(
            name=record.name,
            status=record.status,
            spec=record.spec,
            max_trials=record.max_trials,
            priority=record.priority,
            finished=progress.finished,
            slots_taken=progress.slots_taken,
            counts=progress.counts,
            best_value=progress.best_value,
            dashboard_url=f"{base}/dashboard/studies/{view.optuna_id}" if view.optuna_id is not None else None,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class TrialOut(BaseModel):
    """One trial: its state, parameters, value, per-epoch validation accuracy and attributes."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    intermediate_values: dict[str, float]
    user_attrs: dict[str, Any]
    retry_of: int | None
    datetime_start: str | None
    datetime_complete: str | None


class TrialPage(BaseModel):
    """A page of trials ordered by number."""

    total: int
    offset: int
    limit: int
    trials: list[TrialOut]


class BestOut(BaseModel):
    """The best completed trial and the training config that reproduces it."""

    trial_number: int
    value: float
    params: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]


class Health(BaseModel):
    """Liveness of the API and its database."""

    status: str
    database: str
