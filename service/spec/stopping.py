"""``stop_when``: the rules that end a study before its budget is spent, and which one a study's
figures meet. The figures are read by service/scheduling/stopping.py; nothing here touches a database.

- ``target``: the best validation accuracy reaches it;
- ``plateau``: the last ``trials`` finished trials improved the best by no more than ``min_delta``
  (a complete trial must have finished before them: the first trials' progress is not a plateau);
- ``max_wall_clock_s``: seconds since the study's first trial started, paused or stopped time left out;
- ``max_compute_s``: the sum of its finished trials' durations, every device kind together.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

from objectives.strict import StrictModel


class Plateau(StrictModel):
    """The search has stopped improving: the last ``trials`` finished trials raised the best by no
    more than ``min_delta`` (0: not at all)."""

    trials: int = Field(ge=1, le=100_000)
    min_delta: float = Field(default=0.0, ge=0.0, le=1.0)


class StopWhen(StrictModel):
    """Any combination of the rules; the first one met completes the study."""

    target: float | None = Field(default=None, gt=0.0, le=1.0)  # a validation accuracy
    plateau: Plateau | None = None
    max_wall_clock_s: float | None = Field(default=None, gt=0.0)
    max_compute_s: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _some_rule(self) -> StopWhen:
        if (self.target, self.plateau, self.max_wall_clock_s, self.max_compute_s) == (None, None, None, None):
            raise ValueError("name at least one rule: target, plateau, max_wall_clock_s or max_compute_s")
        return self


@dataclass(frozen=True)
class StopFigures:
    """What the rules are checked against, for one study."""

    best: float | None  # the best validation accuracy of a complete trial
    best_before_last: float | None  # the best before the last ``plateau.trials`` finished trials (None: none before)
    finished: int  # trials finished (complete, pruned or failed)
    wall_clock_s: float  # since the first trial started, paused time left out (0 before one started)
    compute_s: float  # the sum of the finished trials' durations


def rule_met(rules: StopWhen, figures: StopFigures) -> str | None:
    """The first rule ``figures`` meet, as the study's ``status_reason``; None if none is met."""
    if rules.target is not None and figures.best is not None and figures.best >= rules.target:
        return f"stop_when.target: best val_accuracy {figures.best:.4f} reached {rules.target}"
    plateau = rules.plateau
    if plateau is not None and figures.best is not None and figures.finished >= plateau.trials:
        gain = figures.best - (figures.best_before_last if figures.best_before_last is not None else 0.0)
        if figures.best_before_last is not None and gain <= plateau.min_delta:
            return (
                f"stop_when.plateau: the last {plateau.trials} finished trials raised the best val_accuracy "
                f"by {gain:.4f} (at most {plateau.min_delta}); best {figures.best:.4f}"
            )
    if rules.max_compute_s is not None and figures.compute_s >= rules.max_compute_s:
        return f"stop_when.max_compute_s: {figures.compute_s:.0f} s of trials reached {rules.max_compute_s:g} s"
    if rules.max_wall_clock_s is not None and figures.wall_clock_s >= rules.max_wall_clock_s:
        since = f"{figures.wall_clock_s:.0f} s since the first trial"
        return f"stop_when.max_wall_clock_s: {since} reached {rules.max_wall_clock_s:g} s"
    return None
