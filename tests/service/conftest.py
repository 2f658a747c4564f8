"""What the service tests share: a study with a trial in every state."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

KFOLD_METRICS = {
    "val_accuracy": 0.61,
    "test_accuracy": 0.63,
    "loss": 0.9,
    "epochs": 2,
    "seconds": 3.5,
    "images_per_second": 812.0,
    "device": "cpu",
    "threads": 1,
    "fold_val_accuracies": [0.6, 0.62],
    "fold_test_accuracies": [0.61, 0.64],
    "val_accuracy_std": 0.01,
}


def study_with_every_state(db) -> optuna.Study:
    """Trials 0-4: complete (k-fold metrics), pruned, failed, running, complete (holdout metrics)."""
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    kfold = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)})
    for epoch, value in ((1, 0.5), (2, 0.61)):
        kfold.report(value, epoch)
    kfold.set_user_attr("metrics", KFOLD_METRICS)
    study.tell(kfold, 0.61)
    pruned = study.ask()
    pruned.report(0.2, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    failed.set_user_attr("error", "InitError: init: the weights file x.pt does not exist")
    study.tell(failed, state=TrialState.FAIL)
    study.ask()  # running
    holdout = study.ask()
    holdout.set_user_attr("metrics", {k: v for k, v in KFOLD_METRICS.items() if not k.startswith("fold")})
    study.tell(holdout, 0.7)
    return study
