"""k-fold cross-validation in the training code: the folds, lockstep training, resuming every fold."""

from __future__ import annotations

import statistics

import pytest
import torch
from pydantic import ValidationError

from objectives.checkpoint import find_resumable
from objectives.config import TrainingConfig
from objectives.data import DatasetError, load_dataset
from objectives.train import train
from tests.conftest import DATA_ROOT, StopTraining, stop_after_first_epoch, training_config

SMALL = {"width": 0.0625, "lr": 0.003, "batch_size": 64, "aug_strength": 0.2}
THREE_FOLDS = {"kind": "kfold", "folds": 3, "seed": 0}


def _data(validation: dict, **caps):
    spec = {"kind": "imagefolder", "path": "cifar10-sample", "classes": ["cat", "dog", "ship"], **caps}
    return load_dataset({**spec, "validation": validation}, data_dir=DATA_ROOT)


def test_every_image_validates_in_exactly_one_stratified_fold_the_same_every_time():
    data = _data(THREE_FOLDS, per_class=30)
    assert len(data.folds) == 3
    seen = torch.cat([fold.val.images.flatten(1) for fold in data.folds])
    assert len(seen) == 90 and len(torch.unique(seen, dim=0)) == 90  # 30 per class, each in one fold
    for fold in data.folds:
        assert torch.bincount(fold.val.labels).tolist() == [10, 10, 10]
        assert torch.bincount(fold.train.labels).tolist() == [20, 20, 20]
    again = _data(THREE_FOLDS, per_class=30)
    assert all(torch.equal(a.val.images, b.val.images) for a, b in zip(data.folds, again.folds, strict=True))
    other_seed = _data({**THREE_FOLDS, "seed": 1}, per_class=30)
    assert not torch.equal(other_seed.folds[0].val.images, data.folds[0].val.images)


def test_more_folds_than_a_class_has_images_is_an_error_naming_the_field():
    with pytest.raises(DatasetError, match=r"dataset\.validation\.folds: 5 folds need 5 images"):
        _data({"kind": "kfold", "folds": 5}, per_class=4)


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"validation": {"kind": "kfold", "folds": 1}}, "greater than or equal to 2"),
        ({"validation": {"kind": "kfold", "folds": 11}}, "less than or equal to 10"),
        ({"val_fraction": 0.2, "validation": {"kind": "kfold", "folds": 5}}, "val_fraction contradicts"),
        ({"val_fraction": 0.2, "validation": {"kind": "holdout", "fraction": 0.3}}, "val_fraction contradicts"),
    ],
)
def test_bad_validation_is_refused_naming_the_field(dataset, message):
    with pytest.raises(ValidationError, match=message):
        TrainingConfig.model_validate({"dataset": {"kind": "imagefolder", "path": "x", **dataset}})


def test_the_shorthand_and_the_same_holdout_agree():
    same = {"kind": "imagefolder", "path": "x", "val_fraction": 0.2, "validation": {"kind": "holdout", "fraction": 0.2}}
    assert TrainingConfig.model_validate({"dataset": same}).dataset.split().fraction == 0.2


def test_folds_train_in_lockstep_and_report_their_mean(tmp_path):
    data = _data(THREE_FOLDS, per_class=40)
    reported: list[float] = []
    config = training_config({**SMALL, "eval_shift": False}, epochs=2)  # the final evaluation as the epochs'
    result = train(data, config, report=lambda _e, acc: reported.append(acc))
    assert len(result.fold_val_accuracies) == 3 and len(result.fold_test_accuracies) == 3
    assert result.val_accuracy == pytest.approx(statistics.fmean(result.fold_val_accuracies))
    assert reported[-1] == pytest.approx(result.val_accuracy) and len(reported) == 2
    assert result.val_accuracy_std == pytest.approx(statistics.pstdev(result.fold_val_accuracies))
    assert len(set(result.fold_test_accuracies)) > 1  # three different models


def test_a_stopped_k_fold_run_resumes_every_fold_exactly(tmp_path):
    data = _data(THREE_FOLDS, per_class=40)
    config = training_config(SMALL, epochs=3, seed=2)
    full = train(data, config)
    checkpoint = tmp_path / "trial-0.pt"
    with pytest.raises(StopTraining):
        train(data, config, checkpoint_path=checkpoint, report=stop_after_first_epoch)
    found = find_resumable(checkpoint)
    assert found.epoch == 1 and len(found.history) == 1
    resumed = train(data, config, checkpoint_path=checkpoint, resume_from=found.path)
    assert resumed.fold_val_accuracies == full.fold_val_accuracies
    assert resumed.fold_test_accuracies == full.fold_test_accuracies and resumed.test_accuracy == full.test_accuracy
