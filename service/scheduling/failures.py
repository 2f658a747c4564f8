"""The failure guard: a study whose trials keep failing is paused before it burns its budget.

A broken dataset (a truncated image), a spec this version cannot read, or a bug fails every
trial the same way; without a guard the workers would spend the whole budget on failures.
Workers report each finished trial here; after ``max_failed_trials`` failures in a row the
study is paused, with the last error as the reason (GET /studies/{name}: ``status_reason``).
Resuming it starts the count afresh. Trials failed by a dead worker's stale heartbeat are
retried, not counted: only trials whose objective raised (or returned no number) count.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.db.models import StudyRecord, StudyStatus
from service.notify.outbox import emit

REASON_CHARS = 600


def record_trial_outcome(session: Session, name: str, *, error: str | None, limit: int) -> str | None:
    """Count a finished trial of ``name`` (``error``: why it failed, None if it did not).

    Returns the reason if this trial's failure paused the study. The caller commits.
    """
    this_study = StudyRecord.name == name
    if error is None:
        reset = update(StudyRecord).where(this_study, StudyRecord.consecutive_failures != 0)
        session.execute(reset.values(consecutive_failures=0))  # writes nothing in the usual case
        return None
    counted = (
        update(StudyRecord)
        .where(this_study)
        .values(consecutive_failures=StudyRecord.consecutive_failures + 1)
        .returning(StudyRecord.consecutive_failures)
    )
    failures = session.execute(counted).scalar_one_or_none()
    if failures is None or failures < limit:
        return None
    reason = f"paused after {failures} failed trials in a row; the last failed with {error}"[:REASON_CHARS]
    pause = update(StudyRecord).where(this_study, StudyRecord.status == StudyStatus.RUNNING)
    paused_at = func.coalesce(StudyRecord.paused_at, datetime.now(UTC))  # paused time: scheduling/stopping.py
    paused = (
        session.connection()
        .execute(pause.values(status=StudyStatus.PAUSED, status_reason=reason, paused_at=paused_at))
        .rowcount
    )
    if not paused:
        return None
    spec = session.execute(select(StudyRecord.spec).where(this_study)).scalar_one()
    emit(session, study=name, spec=spec, event="study.paused", data={"reason": reason, "last_error": error})
    return reason
