"""The events a finished trial may raise (service/notify): ``trial.failed`` with its error, and
``study.new_best`` when it beat every other complete trial of its study (at most one a minute per
study). Written in the transaction in which the worker counts the trial (worker/slot_loop)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import StudyRecord
from service.notify.outbox import emit, new_best_due
from service.optuna.stop_stats import trial_result
from service.settings import get_settings


def study_spec(session: Session, name: str) -> dict[str, Any] | None:
    """The spec of the study called ``name`` as stored (None: no such study)."""
    return session.execute(select(StudyRecord.spec).where(StudyRecord.name == name)).scalar_one_or_none()


def trial_ended(session: Session, name: str, trial_id: int, error: str | None, spec: dict[str, Any] | None) -> None:
    """Emit what the trial's end means to the receivers of the study (whose stored ``spec`` the
    caller has read: ``study_spec``); the caller commits."""
    if not spec or not (spec.get("notify") or get_settings().notify_url):
        return  # nobody listens: no read of the trial either
    number, value, best_before = trial_result(session, trial_id)
    if error is not None:
        emit(session, study=name, spec=spec, event="trial.failed", data={"trial": number, "error": error})
    elif value is not None and (best_before is None or value > best_before) and new_best_due(session, name):
        data = {"trial": number, "val_accuracy": value, "previous_best": best_before}
        emit(session, study=name, spec=spec, event="study.new_best", data=data)
