"""The learning curves of each study's best trials, as custom plots in optuna-dashboard's study
page: redrawn by the API's sweep when a study's count of complete trials has changed since they
were last drawn, so no trial's path pays for them (the figures are the report's). What they were
drawn from is kept in the database beside them: a restarted API redraws only what changed (it
redrew every study's, a plotly figure each, and slowed its requests for as long). A round draws
for at most ``ROUND_S`` seconds, newest studies first, so that the sweep's other work (stale
trials, stopping rules) does not wait behind a first drawing of many studies."""

from __future__ import annotations

import time

from service.db.database import Database
from service.optuna.dashboard_plots import drawn_from, mark_drawn, save_plot
from service.optuna.pages import trials_by_ids
from service.optuna.summaries import best_trial_ids
from service.reports import figures
from service.studies.read import SpecCache, list_studies
from service.studies.tallies import StudyTallies

BEST = 5  # trials whose curves the dashboard shows
ROUND_S = 2.0  # a round's drawing time; what is left is drawn by the next rounds (30 ms a study here)
TITLES = {"learning-curves": "Validation accuracy per epoch", "losses": "Training (solid) and validation (dashed) loss"}


def refresh_dashboard_plots(
    database: Database, tallies: StudyTallies, specs: SpecCache, round_s: float = ROUND_S
) -> int:
    """Redraw the plots of the studies that have completed trials since their last drawing, for
    about ``round_s`` seconds (at least one study); returns how many were drawn."""
    with database.sessions() as session:
        studies = list_studies(session=session, tallies=tallies, specs=specs)  # commits
        drawn = drawn_from(session)
    complete = {s.optuna_id: s.progress.counts["complete"] for s in studies if s.optuna_id is not None}
    changed = [sid for sid, count in complete.items() if count and drawn.get(sid) != count]  # newest first
    deadline = time.monotonic() + round_s
    for done, study_id in enumerate(changed):
        if done and time.monotonic() > deadline:
            return done
        _draw(database, study_id, complete[study_id])
    return len(changed)


def _draw(database: Database, study_id: int, complete: int) -> None:
    """Draw the study's plots from its best trials, and record the complete trials they show."""
    with database.session() as session:
        connection = session.connection()
        best = trials_by_ids(connection, best_trial_ids(connection, study_id, BEST))
        best.sort(key=lambda trial: -(trial.value or 0.0))
        for plot_id, figure in (("learning-curves", figures.learning_curves(best)), ("losses", figures.losses(best))):
            if not isinstance(figure, str):
                figure.update_layout(title=f"{TITLES[plot_id]}: the {len(best)} best trials")
                save_plot(session, study_id, plot_id, figure.to_json())
        mark_drawn(session, study_id, complete)
