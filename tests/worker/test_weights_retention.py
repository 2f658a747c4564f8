"""HPO_KEEP_WEIGHTS: a study keeps the final weights of its best trials only."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from objectives.model import build_model
from objectives.train import TrainResult
from service.settings import get_settings
from tests.worker.helpers import new_study, run_slot, set_status, slot_loop, trials
from worker.objective import TrialObjective
from worker.slots import TrialQuota


def _lr_is_the_accuracy(_data: Any, config: Any, *, report: Any, weights_path: Path, **_: Any) -> TrainResult:
    """Zero-cost training whose validation accuracy is its learning rate, writing untrained weights as training does."""
    accuracy = config.params["lr"]
    report(1, accuracy)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_model(config.objective, config.params, num_classes=10).state_dict(), weights_path)
    return TrainResult(
        accuracy, accuracy, loss=0.0, epochs=1, seconds=0.0, images_per_second=0.0, device="cpu", threads=1
    )


@dataclass
class ZeroCost(TrialObjective):
    load_fn: Any = lambda *_, **__: None
    train_fn: Any = _lr_is_the_accuracy


def test_only_the_best_trials_keep_their_weights(db, monkeypatch):
    monkeypatch.setenv("HPO_KEEP_WEIGHTS", "2")
    get_settings.cache_clear()
    new_study(db, max_trials=5, epochs=1, pruner={"name": "none"}, sampler={"name": "random", "seed": 4})
    run_slot(db, ZeroCost)

    done = trials(db, "s")
    assert [t.state for t in done] == [TrialState.COMPLETE] * 5
    best_two = sorted(done, key=lambda t: -(t.value or 0.0))[:2]
    root = get_settings().artifact_dir.resolve()
    kept = sorted(p.name for p in root.rglob("*.weights.pt"))
    assert kept == sorted(f"trial-{t.number}.weights.pt" for t in best_two)


def test_weights_another_study_starts_from_are_never_pruned(db, monkeypatch):
    monkeypatch.setenv("HPO_KEEP_WEIGHTS", "1")
    get_settings.cache_clear()
    worst = {"lr": 0.0001, "batch_size": 32, "aug_strength": 0.0}  # trial 0: the lowest accuracy the space allows
    new_study(
        db, max_trials=4, epochs=1, pruner={"name": "none"}, sampler={"name": "random", "seed": 4}, enqueue=[worst]
    )
    first = slot_loop(db, ZeroCost)
    first.quota = TrialQuota(multiprocessing.get_context(), 1)
    first.run()
    new_study(db, name="fine", init={"kind": "study", "study": "s"})  # pins trial 0's weights
    set_status(db, "fine", "pause")
    run_slot(db, ZeroCost)  # trials 1-3 of s, each pruning the weights of all but the best

    done = trials(db, "s")
    best = max(done, key=lambda t: t.value or 0.0)
    root = get_settings().artifact_dir.resolve()
    kept = sorted(p.name for p in root.rglob("*.weights.pt"))
    assert kept == sorted({"trial-0.weights.pt", f"trial-{best.number}.weights.pt"})
