"""Custom plots in optuna-dashboard: a plotly figure saved as the study system attributes that
optuna-dashboard reads (``optuna_dashboard._custom_plot_data``: the figure's JSON in chunks under
``dashboard:plot_data:<id>:<n>``), as its ``save_plotly_graph_object`` writes them.

``save_plotly_graph_object`` writes each chunk in a transaction of its own and then reads every
system attribute of the study (with every trial's note: 20,000 trials' worth on a large study);
this writes the chunks and clears the old ones in one transaction.

Beside the plots, ``DRAWN_FROM`` records how many complete trials they were drawn from, so that
a restarted API (or another API process) redraws only the studies that have changed since.
"""

from __future__ import annotations

from optuna.storages._rdb import models
from optuna_dashboard._custom_plot_data import SYSTEM_ATTR_PLOT_DATA, is_valid_graph_object_id, split_plot_data
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.optuna.storage import upsert_study_system_attrs

DRAWN_FROM = "hpo:plots_drawn_from"  # study system attribute: the complete trials the plots show


def save_plot(session: Session, study_id: int, plot_id: str, figure_json: str) -> None:
    """Show the figure (plotly's JSON) as the custom plot ``plot_id`` of the study, replacing the
    one of that id; commit is the caller's."""
    if not is_valid_graph_object_id(plot_id):
        raise ValueError(f"{plot_id!r} is not a valid graph object id")
    prefix = f"{SYSTEM_ATTR_PLOT_DATA}{plot_id}:"
    attr = models.StudySystemAttributeModel
    session.execute(delete(attr).where(attr.study_id == study_id, attr.key.startswith(prefix, autoescape=True)))
    upsert_study_system_attrs(session, study_id, split_plot_data(figure_json, prefix))


def mark_drawn(session: Session, study_id: int, complete: int) -> None:
    """Record that the study's plots show its first ``complete`` complete trials; commit is the caller's."""
    upsert_study_system_attrs(session, study_id, {DRAWN_FROM: complete})


def drawn_from(session: Session) -> dict[int, int]:
    """Per Optuna study id, the complete trials its plots were last drawn from (one query, a row per study drawn)."""
    attr = models.StudySystemAttributeModel
    rows = session.execute(select(attr.study_id, attr.value_json).where(attr.key == DRAWN_FROM))
    return {study_id: int(value) for study_id, value in rows}
