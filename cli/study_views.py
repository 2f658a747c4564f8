"""What ``hpo study`` prints for people (``--json`` prints the API's answer as it is): tables of
studies and trials, a study's compute time, the best trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_studies(console: Console, studies: list[dict[str, Any]], details: bool = False) -> None:
    """The studies as a table; ``details``: one study's view, with its compute time and dashboard."""
    console.print(studies_table(studies))
    for study in studies:
        if study.get("status_reason"):
            console.print(f"{study['name']}: {study['status_reason']}")
    if details and studies:
        console.print(f"compute: {duration(studies[0]['compute_s'])} of finished trials")
        if studies[0].get("dashboard_url"):
            console.print(f"dashboard: {studies[0]['dashboard_url']}")


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 42 s, 12.5 min, 3.2 h."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def print_best(console: Console, answer: dict[str, Any], config_out: Path | None) -> None:
    """The best trial: its accuracies, params, and its config (or where it was written) and weights."""
    metrics = answer["metrics"]
    folds = metrics.get("fold_val_accuracies") or []
    spread = f" ± {metrics.get('val_accuracy_std', 0.0):.4f} over {len(folds)} folds" if folds else ""
    console.print(
        f"best trial {answer['trial_number']}: val_accuracy {answer['value']:.4f}{spread}, "
        f"test_accuracy {metrics.get('test_accuracy', float('nan')):.4f}"
    )
    console.print(f"params: {json.dumps(answer['params'])}")
    if config_out:
        console.print(f"config written to {config_out}: hpo train --config {config_out}")
    else:
        console.print(f"config: {json.dumps(answer['config'])}")
    if answer.get("model"):
        console.print(f"weights saved to {answer['model']} (torch.load(..., weights_only=True))")


def trials_table(page: dict[str, Any]) -> Table:
    shown = f"{page['offset'] + 1}-{page['offset'] + len(page['trials'])}" if page["trials"] else "none"
    table = Table("trial", "state", "value", "epochs", "error", title=f"trials {shown} of {page['total']}")
    for trial in page["trials"]:
        value = "-" if trial["value"] is None else f"{trial['value']:.4f}"
        epochs = str(len(trial["intermediate_values"]))
        table.add_row(str(trial["number"]), trial["state"], value, epochs, trial.get("error") or "")
    return table


def studies_table(studies: list[dict[str, Any]]) -> Table:
    """Studies, a row each: status, progress against the budget, trials by state, best value."""
    table = Table("name", "status", "progress", "running", "pruned", "failed", "best val_accuracy")
    for s in studies:
        counts = s["counts"]
        best = "-" if s["best_value"] is None else f"{s['best_value']:.4f}"
        table.add_row(
            s["name"],
            s["status"],
            f"{s['finished']}/{s['max_trials']}",
            str(counts["running"]),
            str(counts["pruned"]),
            str(counts["fail"]),
            best,
        )
    return table
