"""``PATCH /studies/{name}``: what may change on a study that runs, is paused or stopped: its
budget (``max_trials``) and its stopping rules (``stop_when``), validated as at creation.

Workers read both at their next claim (the budget) and at the next trial's end (the rules), so a
change takes effect from there; the rules are also checked at once, and may complete the study.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from objectives.strict import StrictModel
from service.db.models import IN_PROGRESS, StudyRecord, StudyStatus
from service.errors import SpecError, StudyConflictError, StudyNotFoundError
from service.scheduling.budget import read_budget
from service.scheduling.stopping import check_stop_rules
from service.spec.stopping import StopWhen


class StudyChange(StrictModel):
    """The fields to change; a field left out keeps its value, ``"stop_when": null`` removes the rules."""

    max_trials: int | None = Field(default=None, ge=1, le=100_000)
    stop_when: StopWhen | None = None


def change_study(*, session: Session, name: str, change: StudyChange) -> str | None:
    """Apply ``change`` to the study ``name`` and commit; returns the reason if a stopping rule
    completed it at once. StudyNotFoundError, StudyConflictError (completed: nothing left to
    change), SpecError (422: ``max_trials`` below the trials already started or queued)."""
    query = select(StudyRecord).where(StudyRecord.name == name, StudyRecord.status.not_in(IN_PROGRESS))
    record = session.execute(
        query.with_for_update()
    ).scalar_one_or_none()  # the claims' lock: no trial starts meanwhile
    if record is None:
        raise StudyNotFoundError(f"no study named {name!r}")
    if record.status == StudyStatus.COMPLETED:
        raise StudyConflictError(f"cannot change study {name!r}: it is completed")
    budget, optuna_id = read_budget(session, name)
    spec: dict[str, Any] = dict(record.spec)
    if change.max_trials is not None:
        if change.max_trials < budget.slots_taken:
            raise SpecError(
                "max_trials",
                f"{change.max_trials} is below the {budget.slots_taken} trials started or queued already",
            )
        record.max_trials = spec["max_trials"] = change.max_trials
    if "stop_when" in change.model_fields_set:
        spec["stop_when"] = None if change.stop_when is None else change.stop_when.model_dump(mode="json")
    record.spec = spec  # a new dict: the JSON column sees the change
    reason = check_stop_rules(session, record, optuna_id) if optuna_id is not None else None
    session.commit()
    return reason
