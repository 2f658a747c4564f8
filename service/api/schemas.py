"""Response models of the API (requests use service.spec.schema.StudySpec directly)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.db.models import in_utc
from service.settings import get_settings
from service.studies.read import StudySummary


class StudyOut(BaseModel):
    """A study with its progress. ``finished`` counts as the budget counts."""

    name: str
    status: str
    status_reason: str | None  # why the service paused it (failed trials in a row), if it did
    spec: dict[str, Any]
    max_trials: int
    priority: int
    finished: int  # COMPLETE + PRUNED + FAIL that was not retried
    slots_taken: int  # trials started or queued, retries not counted again
    counts: dict[str, int]  # complete, pruned, fail, running, waiting
    best_value: float | None
    compute_s: float  # the finished trials' durations summed: what stop_when.max_compute_s counts
    dashboard_url: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_summary(cls, study: StudySummary) -> StudyOut:
        """Build from a study's summary without validating again what the service wrote itself
        (at 200 studies per list, validation cost 5 ms)."""
        settings, progress = get_settings(), study.progress
        base = (settings.dashboard_url or settings.api_url).rstrip("/")
        return cls.model_construct(
            name=study.name,
            status=study.status,
            status_reason=study.status_reason,
            spec=study.spec,
            max_trials=study.max_trials,
            priority=study.priority,
            finished=progress.finished,
            slots_taken=progress.slots_taken,
            counts=progress.counts,
            best_value=progress.best_value,
            compute_s=progress.compute_ms / 1000,
            dashboard_url=f"{base}/dashboard/studies/{study.optuna_id}" if study.optuna_id is not None else None,
            created_at=in_utc(study.created_at),
            updated_at=in_utc(study.updated_at),
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
    error: str | None  # a failed trial's exception, type and message
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


class InputScaling(BaseModel):
    """How a model started from these weights standardises its inputs: ``(pixel / 255 - mean) / std``."""

    mean: list[float]
    std: list[float]
    formula: str


class PretrainedOut(BaseModel):
    """Published weights a study can start from (``init: {"kind": "pretrained", "weights": name}``)."""

    name: str
    objective: str
    source: str
    available: bool  # whether this installation (the API's) has the file
    file_bytes: int | None
    input_scaling: InputScaling
    params: dict[str, Any]  # parameters of the objective the weights fix


class Health(BaseModel):
    """Liveness of the API and its database."""

    status: str
    database: str


class Problem(BaseModel):
    """Why a request was refused (every 4xx and 5xx but 413 and 422)."""

    detail: str


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these refusals, so generated clients and fuzzers know every answer."""
    described = {
        400: "the body could not be read (it is not text in UTF-8)",
        401: "no valid token (only when HPO_API_TOKEN is set)",
        403: "the viewer token may only read",
        404: "no study of that name",
        409: "the study's state does not allow it (see detail)",
        503: "the database is not answering; try again after Retry-After seconds",
    }
    entries: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem, "description": described[code]} for code in codes if code in described
    }
    if 413 in codes:
        entries[413] = {
            "description": "the body is over 1 MB (refused before it is parsed)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return entries
