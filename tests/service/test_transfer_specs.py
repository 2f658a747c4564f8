"""Specs for transfer learning: every kind of bad input is a 422 naming the field, and nothing is written."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution

from objectives.model import build_model
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


def test_a_weights_file_is_accepted_only_if_it_fits_the_model(api, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(build_model("cnn", {"width": 0.125}, num_classes=3).state_dict(), weights / "x.pt")
    torch.save(build_model("cnn", {"width": 0.25}, num_classes=3).state_dict(), weights / "wide.pt")
    (weights / "junk.pt").write_bytes(b"not a torch file")
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    from service.settings import get_settings

    get_settings.cache_clear()

    def create(path: str, **overrides):
        init = {"kind": "file", "path": path}
        return api.post("/studies", json=make_spec("t", dataset={"kind": "cifar10"}, init=init, **overrides))

    refusals = [
        (
            create("weights/wide.pt"),
            ["body", "init"],
            "'0.weight' in wide.pt has shape (16, 3, 3, 3), the model needs (8, 3, 3, 3)",
        ),
        (create("weights/junk.pt"), ["body", "init"], "junk.pt is not a readable state_dict"),
        (
            create("weights/x.pt", search_space={"width": {"type": "categorical", "choices": [0.125, 0.25]}}),
            ["body"],  # a whole-spec check: its message names the field
            "search_space.width: starting weights (init) fix the model's shape, so width takes one value",
        ),
    ]
    for answer, loc, message in refusals:
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == loc and message in answer.text
    assert api.get("/studies").json() == []
    answer = create("weights/x.pt")
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


def test_imagenet_weights_need_imagenet_s_stem(api, tmp_path, monkeypatch):
    """No network here: the file is made in the hub-cache layout, as torchvision would download it."""
    from torchvision.models import resnet18

    from objectives.registry import OBJECTIVES

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    file = tmp_path / "hub" / "checkpoints" / OBJECTIVES["resnet18"].torchvision_weights[TORCHVISION["weights"]]
    file.parent.mkdir(parents=True)
    torch.save(resnet18(num_classes=1000).state_dict(), file)
    small = make_spec("t", objective="resnet18", search_space={}, init=TORCHVISION)
    answer = api.post("/studies", json=small)  # small_stem defaults to true: a 3x3 first convolution
    assert answer.status_code == 422 and "'conv1.weight'" in answer.text and "(64, 3, 7, 7)" in answer.text
    imagenet = make_spec("t", objective="resnet18", search_space={"small_stem": False}, init=TORCHVISION)
    assert api.post("/studies", json=imagenet).status_code == 201
