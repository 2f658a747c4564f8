"""Specs for k-fold cross-validation: bad input is a 422 naming the field, and nothing is written."""

from __future__ import annotations

import pytest

from tests.conftest import make_spec

SAMPLE = {"kind": "imagefolder", "path": "cifar10-sample"}


@pytest.mark.parametrize(
    ("dataset", "named"),
    [
        ({**SAMPLE, "validation": {"kind": "kfold", "folds": 1}}, "folds"),
        ({**SAMPLE, "validation": {"kind": "kfold", "folds": 11}}, "folds"),
        ({**SAMPLE, "per_class": 3, "validation": {"kind": "kfold", "folds": 5}}, "5 folds need 5 images"),
        ({**SAMPLE, "limit": 40, "validation": {"kind": "kfold", "folds": 5}}, "one has 4"),
        ({**SAMPLE, "val_fraction": 0.2, "validation": {"kind": "kfold", "folds": 5}}, "val_fraction contradicts"),
        ({**SAMPLE, "validation": {"kind": "none"}}, "a study selects on validation"),
    ],
)
def test_bad_validation_is_a_422_naming_it_and_nothing_is_written(api, dataset, named):
    answer = api.post("/studies", json=make_spec("cv", dataset=dataset))
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert "validation" in answer.text or "val_fraction" in answer.text
    assert api.get("/studies").json() == []


def test_a_k_fold_study_records_the_seed_of_its_folds(api):
    dataset = {**SAMPLE, "per_class": 20, "validation": {"kind": "kfold", "folds": 5}}
    answer = api.post("/studies", json=make_spec("cv", dataset=dataset, seed=7))
    assert answer.status_code == 201, answer.text
    assert answer.json()["spec"]["dataset"]["validation"] == {"kind": "kfold", "folds": 5, "seed": 7}
