"""Which study a worker slot serves next: the highest priority, then the least busy."""

from __future__ import annotations

from dataclasses import dataclass

from service.db.database import Database
from service.db.models import StudyRecord, StudyStatus
from service.scheduling.budget import Budget, mark_completed_if_spent, may_start, records_with_budget


@dataclass(frozen=True)
class Candidate:
    """A running study and how much work it has."""

    name: str
    priority: int
    claimable: bool  # a waiting trial exists, or budget is left
    active: int  # trials running or waiting


def survey(db: Database, only: str | None = None) -> list[Candidate]:
    """Running studies (or just ``only``) with their work, completing those whose budget is spent."""
    query = records_with_budget(only).where(StudyRecord.status == StudyStatus.RUNNING)
    candidates = []
    with db.session() as session:
        for row in session.execute(query.order_by(StudyRecord.priority.desc(), StudyRecord.created_at)):
            record, budget = row.StudyRecord, Budget.of(row)
            if row.optuna_id is None:  # its Optuna side was deleted elsewhere: nothing to run (the API removes it)
                continue
            if mark_completed_if_spent(record, budget):
                continue
            candidates.append(Candidate(record.name, record.priority, may_start(record, budget), budget.active))
    return candidates


def choose(candidates: list[Candidate]) -> Candidate | None:
    """Highest priority first; among equals the study with the fewest active trials (then the oldest)."""
    claimable = [c for c in candidates if c.claimable]
    if not claimable:
        return None
    top = max(c.priority for c in claimable)
    return min((c for c in claimable if c.priority == top), key=lambda c: c.active)
