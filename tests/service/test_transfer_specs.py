"""Specs for transfer learning: every kind of bad input is a 422 naming the field, and nothing is written."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from tests.conftest import make_spec

TORCHVISION = {"kind": "torchvision", "weights": "ResNet18_Weights.IMAGENET1K_V1"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"init": {"kind": "imagenet"}}, "init"),
        ({"init": {"kind": "file", "path": "../outside.pt"}}, "init.path"),
        ({"init": {"kind": "file", "path": "cifar10-sample/none.pt"}}, "does not exist"),
        ({"init": {"kind": "study", "study": "nowhere"}}, "no study named 'nowhere'"),
        ({"init": {"kind": "study", "study": "pre", "weights": "../../etc/passwd"}}, "init.weights"),
        ({"init": TORCHVISION}, "not torchvision weights for 'cnn'"),
        ({"objective": "resnet18", "search_space": {}, "init": TORCHVISION}, "hub cache"),
        ({"search_space": {"freeze": 5}}, "search_space.freeze"),
        ({"search_space": {"backbone_lr_scale": 0}}, "search_space.backbone_lr_scale"),
        ({"dataset": {"kind": "imagefolder", "path": "cifar10-sample", "per_class": 0}}, "per_class"),
        ({"dataset": {"kind": "imagefolder", "path": "cifar10-sample", "classes": ["dog", "dragon"]}}, "'dragon'"),
        ({"dataset": {"kind": "imagefolder", "path": "cifar10-sample", "classes": ["dog", "dog"]}}, "twice"),
        ({"dataset": {"kind": "cifar10", "classes": ["dog", "kitten"]}}, "'kitten'"),
        ({"enqueue_from": {"study": "nowhere", "top": 2}}, "enqueue_from"),
    ],
)
def test_bad_transfer_input_is_a_422_naming_it_and_nothing_is_written(api, tmp_path, monkeypatch, overrides, named):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    answer = api.post("/studies", json=make_spec("t", **overrides))
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert api.get("/studies").json() == []


def test_an_earlier_study_must_have_a_completed_trial_and_the_same_objective(api):
    assert api.post("/studies", json=make_spec("pre")).status_code == 201
    answer = api.post("/studies", json=make_spec("t", init={"kind": "study", "study": "pre"}))
    assert answer.status_code == 422 and "has no completed trial" in answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "init", "study"]
    other = make_spec("t", objective="resnet18", search_space={}, init={"kind": "study", "study": "pre"})
    answer = api.post("/studies", json=other)
    assert answer.status_code == 422 and "trained 'cnn', not 'resnet18'" in answer.text
    assert [s["name"] for s in api.get("/studies").json()] == ["pre"]


def test_a_weights_file_under_the_data_dir_is_accepted(api, tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "x.pt").write_bytes(b"checked by the worker when it loads")
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    from service.settings import get_settings

    get_settings.cache_clear()
    spec = make_spec("t", dataset={"kind": "cifar10"}, init={"kind": "file", "path": "weights/x.pt"})
    answer = api.post("/studies", json=spec)
    assert answer.status_code == 201, answer.text
    assert answer.json()["spec"]["init"] == {"kind": "file", "path": "weights/x.pt"}


def test_the_best_model_is_404_until_a_trial_completed(api):
    assert api.get("/studies/nowhere/best/model").status_code == 404
    assert api.post("/studies", json=make_spec("s")).status_code == 201
    answer = api.get("/studies/s/best/model")
    assert answer.status_code == 404 and "no completed trial" in answer.text


def test_enqueue_from_takes_an_earlier_study_s_best_configs_restricted_to_this_space(api, db):
    assert api.post("/studies", json=make_spec("pre")).status_code == 201
    earlier = optuna.load_study(study_name="pre", storage=db.storage)
    space = {
        "lr": FloatDistribution(1e-4, 0.1, log=True),
        "batch_size": CategoricalDistribution([32, 64, 128, 256]),
        "aug_strength": FloatDistribution(0.0, 1.0),
    }
    for lr, batch, value in [(0.01, 32, 0.5), (0.02, 256, 0.7), (0.001, 64, 0.6)]:
        params = {"lr": lr, "batch_size": batch, "aug_strength": 0.5}
        earlier.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))

    space_here = {**make_spec()["search_space"], "batch_size": {"type": "categorical", "choices": [32, 64]}}
    spec = make_spec("t", search_space=space_here, enqueue_from={"study": "pre", "top": 2}, max_trials=3)
    created = api.post("/studies", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["enqueue"] == [
        {"lr": 0.02, "aug_strength": 0.5},  # the best; its batch size of 256 lies outside this space
        {"lr": 0.001, "batch_size": 64, "aug_strength": 0.5},
    ]
    assert created.json()["counts"]["waiting"] == 2

    too_many = make_spec("u", enqueue_from={"study": "pre", "top": 3}, max_trials=2)
    answer = api.post("/studies", json=too_many)
    assert answer.status_code == 422 and "max_trials is 2" in answer.text
