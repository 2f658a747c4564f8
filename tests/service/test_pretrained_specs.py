"""Studies that start from the catalogue's pretrained weights: GET /pretrained lists what is
installed, a fitting spec is accepted, and every kind of bad input is a 422 naming the field."""

from __future__ import annotations

import pytest
import torch

from objectives.model import build_model
from tests.conftest import make_spec

LITE0 = {"kind": "pretrained", "weights": "efficientnet_lite0.imagenet"}
RESNET = {"kind": "pretrained", "weights": "resnet18.imagenet"}


def _lite0_spec(name: str = "ft", **overrides) -> dict:
    space = {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}, "freeze": 9, "image_size": 64}
    return make_spec(name, **{"objective": "efficientnet_lite0", "search_space": space, "init": LITE0, **overrides})


def test_the_catalogue_lists_the_package_s_weights_and_says_what_is_absent(api, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    answer = api.get("/pretrained")
    assert answer.status_code == 200, answer.text
    entries = {entry["name"]: entry for entry in answer.json()}
    lite0 = entries["efficientnet_lite0.imagenet"]
    assert lite0["objective"] == "efficientnet_lite0" and lite0["available"] and lite0["file_bytes"] > 10**7
    assert lite0["input_scaling"]["mean"] == pytest.approx([127 / 255] * 3)
    assert entries["resnet18.imagenet"]["available"] is False and entries["resnet18.imagenet"]["file_bytes"] is None

    checkpoints = tmp_path / "hub" / "checkpoints"  # torchvision's file, where TORCH_HOME says
    checkpoints.mkdir(parents=True)
    torch.save(build_model("resnet18", {"small_stem": False}, 1000).state_dict(), checkpoints / "resnet18-f37072fd.pth")
    assert {e["name"]: e["available"] for e in api.get("/pretrained").json()}["resnet18.imagenet"] is True


def test_a_study_from_pretrained_weights_is_accepted_with_the_init_it_names(api):
    created = api.post("/studies", json=_lite0_spec())
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["init"] == LITE0
    assert created.json()["spec"]["objective"] == "efficientnet_lite0"


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        (
            _lite0_spec(init={"kind": "pretrained", "weights": "vgg16.imagenet"}),
            "init",
            "installed: efficientnet_lite0",
        ),
        (make_spec("t", init=LITE0), "init.weights", "weights for objective 'efficientnet_lite0', not 'cnn'"),
        (
            make_spec("t", objective="resnet18", search_space={"small_stem": False}, init=RESNET),
            "weights",
            "not installed",
        ),
        (_lite0_spec(search_space={"image_size": 400}), "search_space.image_size", "image_size must lie in [32, 320]"),
        (
            _lite0_spec(search_space={"image_size": {"type": "categorical", "choices": [64, 512]}}),
            "search_space",
            "512",
        ),
        (make_spec("t", search_space={"image_size": 64}), "search_space.image_size", "image_size must lie in [32, 32]"),
        (_lite0_spec(search_space={"freeze": 10}), "search_space.freeze", "freeze must lie in [0, 9]"),
    ],
)
def test_bad_pretrained_input_is_a_422_naming_it_and_nothing_is_written(api, tmp_path, monkeypatch, spec, field, says):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: resnet18.imagenet is not installed
    answer = api.post("/studies", json=spec)
    assert answer.status_code == 422, answer.text
    assert field in answer.text and says in answer.text, answer.text
    assert api.get("/studies").json() == []
