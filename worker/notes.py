"""The note a completed trial leaves in optuna-dashboard (Markdown): what it measured, the config
that reproduces it and the command that does. The storage writes it with the trial's end
(service/optuna/storage.set_note_on_finish)."""

from __future__ import annotations

import json
from typing import Any

from objectives.config import HOLDOUT_RESULT


def trial_note(number: int, config: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A completed trial's note: its metrics as a table, then its config and `hpo train` line."""
    rows = [f"| {name} | {_shown(metrics[name])} |" for name in HOLDOUT_RESULT if name in metrics]
    if metrics.get("fold_val_accuracies"):
        folds = ", ".join(f"{value:.4f}" for value in metrics["fold_val_accuracies"])
        rows.append(f"| folds' val_accuracy | {folds} (std {metrics['val_accuracy_std']:.4f}) |")
    threads = f" --threads {metrics['threads']}" if metrics.get("device") == "cpu" else ""
    return "\n".join(
        [
            f"## Trial {number}",
            "",
            "| metric | value |",
            "| --- | --- |",
            *rows,
            "",
            f"Reproduce it: save the config below as `trial-{number}.json`, then",
            f"`hpo train --config trial-{number}.json{threads}`"
            + (" (bit for bit on the same CPU and torch build)." if threads else "."),
            "",
            "```json",
            json.dumps(config, indent=2),
            "```",
        ]
    )


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
