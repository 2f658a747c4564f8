"""The report's figures, as plotly figures, or the sentence that says why one is not drawn.

Optuna's own visualization draws what fits a sample (parameter importances, parallel
coordinates); the figures where every trial counts (optimization history's best line, cost to
target) are computed here from the summary rows, as step curves that keep only the points where
the best improved, so they cost what they show whatever the study's size.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import optuna
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial

from service.optuna.summaries import TrialSummary, in_memory_study

Drawn: TypeAlias = go.Figure | str  # a figure, or why there is none
HISTORY_POINTS = 2000  # complete trials drawn as points in the optimization history (the best line reads all)
PARALLEL_LINES = 300  # trials drawn in parallel coordinates (0.7 s of Optuna's plot at 1,000)
MIN_FOR_IMPORTANCE = 8  # complete trials below which importances are noise
LAYOUT = {"template": "plotly_white", "height": 380, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


@dataclass(frozen=True)
class CostCurve:
    """Best validation accuracy so far against the cost spent: a step curve, one point per improvement
    and one at the end. The cost of every finished trial counts, pruned and failed ones too."""

    epochs: list[float]
    seconds: list[float]
    best: list[float]


def cost_curve(trials: Sequence[TrialSummary]) -> CostCurve:
    """The study's cost-to-target curve, its trials taken in the order they finished."""
    epochs = seconds = 0.0
    best: float | None = None
    curve = CostCurve([], [], [])
    finished = sorted((t for t in trials if t.end is not None), key=lambda t: (t.end, t.number))
    for index, trial in enumerate(finished):
        epochs += trial.epochs_trained
        seconds += trial.seconds
        improved = trial.value is not None and (best is None or trial.value > best)
        best = trial.value if improved else best
        if best is not None and (improved or index == len(finished) - 1):
            curve.epochs.append(epochs)
            curve.seconds.append(round(seconds, 3))
            curve.best.append(best)
    return curve


def cost_figure(curves: dict[str, CostCurve], axis: str) -> Drawn:
    """Cost-to-target curves (one per study) against ``axis``: "epochs" or "seconds"."""
    drawn = {name: curve for name, curve in curves.items() if curve.best}
    if not drawn:
        return "No trial has completed yet: there is no best to draw."
    figure = go.Figure(
        [
            go.Scatter(x=getattr(curve, axis), y=curve.best, mode="lines+markers", line_shape="hv", name=name)
            for name, curve in drawn.items()
        ]
    )
    label = "cumulative training epochs" if axis == "epochs" else "cumulative compute seconds (trial durations)"
    figure.update_layout(
        title=f"Best validation accuracy against {label}", xaxis_title=label, yaxis_title="best val_accuracy", **LAYOUT
    )
    return figure


def optimization_history(trials: Sequence[TrialSummary]) -> Drawn:
    """Each complete trial's validation accuracy by trial number (a sample past ``HISTORY_POINTS``),
    and the best so far."""
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        return "No trial has completed yet."
    shown = complete
    if len(complete) > HISTORY_POINTS:
        shown = sorted(random.Random(0).sample(complete, HISTORY_POINTS), key=lambda t: t.number)
    steps: tuple[list[int], list[float]] = ([], [])
    for trial in complete:
        assert trial.value is not None
        if not steps[1] or trial.value > steps[1][-1]:
            steps[0].append(trial.number)
            steps[1].append(trial.value)
    steps[0].append(complete[-1].number)
    steps[1].append(steps[1][-1])
    sampled = f" ({len(shown)} of {len(complete)} drawn at random)" if len(shown) < len(complete) else ""
    figure = go.Figure(
        [
            go.Scatter(x=[t.number for t in shown], y=[t.value for t in shown], mode="markers", name="complete trial"),
            go.Scatter(x=steps[0], y=steps[1], mode="lines", line_shape="hv", name="best so far"),
        ]
    )
    figure.update_layout(
        title=f"Optimization history{sampled}", xaxis_title="trial", yaxis_title="val_accuracy", **LAYOUT
    )
    return figure


def learning_curves(trials: Sequence[FrozenTrial]) -> Drawn:
    """Validation accuracy per epoch of the given trials: complete ones solid, pruned ones dotted."""
    drawn = [t for t in trials if t.intermediate_values]
    if not drawn:
        return "No trial has reported an epoch yet."
    figure = go.Figure()
    for trial in drawn:
        steps = sorted(trial.intermediate_values)
        pruned = trial.state.name == "PRUNED"
        figure.add_trace(
            go.Scatter(
                x=steps,
                y=[trial.intermediate_values[s] for s in steps],
                mode="lines+markers",
                line={"dash": "dot" if pruned else "solid"},
                name=f"#{trial.number} {trial.state.name.lower()}",
            )
        )
    figure.update_layout(
        title="Learning curves: the best complete trials (solid) and the latest pruned (dotted)",
        xaxis_title="epoch",
        yaxis_title="val_accuracy",
        **LAYOUT,
    )
    return figure


def losses(trials: Sequence[FrozenTrial]) -> Drawn:
    """Training loss (solid) against validation loss (dashed) per epoch of the trials that recorded
    them (the worker's ``epochs`` attribute): where they part, the model overfits."""
    drawn = [t for t in trials if (t.user_attrs.get("epochs") or {}).get("epoch")]
    if not drawn:
        return "No trial here recorded its per-epoch losses."
    figure = go.Figure()
    for trial in drawn:
        curve = trial.user_attrs["epochs"]
        for name, dash in (("train_loss", "solid"), ("val_loss", "dash")):
            figure.add_trace(
                go.Scatter(
                    x=curve["epoch"],
                    y=curve[name],
                    mode="lines",
                    line={"dash": dash},
                    legendgroup=str(trial.number),
                    name=f"#{trial.number} {name}",
                )
            )
    figure.update_layout(
        title="Training loss (solid) against validation loss (dashed)",
        xaxis_title="epoch",
        yaxis_title="loss",
        **LAYOUT,
    )
    return figure


def importances(sample: Sequence[FrozenTrial]) -> Drawn:
    """Optuna's parameter importances (its PED-ANOVA evaluator) over the sample of complete trials.

    Drawn here as a bar chart: Optuna's own plot reads the study's trials again for its hover text
    (a deep copy of each, a second for 1,000 trials)."""
    searched = {name for trial in sample for name in trial.distributions}
    if len(sample) < MIN_FOR_IMPORTANCE:
        return f"Importances need at least {MIN_FOR_IMPORTANCE} complete trials; this study has {len(sample)}."
    if len(searched) < 2:
        return f"The study searches {len(searched)} parameter(s) ({', '.join(sorted(searched))}): nothing to rank."
    found = optuna.importance.get_param_importances(in_memory_study(sample), evaluator=PedAnovaImportanceEvaluator())
    ranked = sorted(found.items(), key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[value for _, value in ranked],
            y=[name for name, _ in ranked],
            orientation="h",
            text=[f"{value:.2f}" for _, value in ranked],
        )
    )
    figure.update_layout(
        title="Hyperparameter importances (PED-ANOVA)", xaxis_title="importance for val_accuracy", **LAYOUT
    )
    return figure


def parallel_coordinates(sample: Sequence[FrozenTrial]) -> Drawn:
    """Optuna's parallel coordinates over the sample (at most ``PARALLEL_LINES`` of it, at random)."""
    if not sample:
        return "No trial has completed yet."
    if not any(trial.distributions for trial in sample):
        return "The study searches no parameter."
    shown = list(sample) if len(sample) <= PARALLEL_LINES else random.Random(1).sample(list(sample), PARALLEL_LINES)
    figure = optuna.visualization.plot_parallel_coordinate(in_memory_study(shown), target_name="val_accuracy")
    figure.update_layout(**LAYOUT)
    return figure
