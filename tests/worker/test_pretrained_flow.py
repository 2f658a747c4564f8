"""Starting from ImageNet end to end: a study created through the API with
``init: {"kind": "pretrained"}`` trains (here, in this process's slot loop, as a worker child
runs it), its head-only trials share one set of cached features, and its best model downloads,
loads with ``weights_only=True`` and reproduces its test accuracy."""

from __future__ import annotations

import io

import pytest
import torch
from optuna.trial import TrialState

from objectives.data import load_dataset
from objectives.evaluate import evaluate
from objectives.model import build_model
from service.settings import get_settings
from tests.conftest import DATA_ROOT, make_spec
from tests.worker.helpers import run_slot, trials

FIVE = ["dog", "frog", "horse", "ship", "truck"]
DATASET = {"kind": "imagefolder", "path": "cifar10-sample", "classes": FIVE, "per_class": 12, "val_fraction": 0.2}


def _spec(name: str, **overrides) -> dict:
    space = {"lr": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True}, "freeze": 9, "image_size": 32}
    spec = {
        "objective": "efficientnet_lite0",
        "dataset": DATASET,
        "search_space": space,
        "init": {"kind": "pretrained", "weights": "efficientnet_lite0.imagenet"},
        "max_trials": 2,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        **overrides,
    }
    return make_spec(name, **spec)


def test_a_study_from_imagenet_weights_runs_and_its_best_model_loads_safely(pg_api, pg_db, tmp_path, monkeypatch):
    api, db = pg_api, pg_db
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path))  # an empty cache
    get_settings.cache_clear()
    assert api.post("/studies", json=_spec("imagenet")).status_code == 201
    run_slot(db)

    done = trials(db, "imagenet")
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("error") for t in done]
    # computed once for both trials: the training images as they are and mirrored; validation and
    # test images in the six views of the final evaluation (eval_flip and eval_shift)
    assert len(list((tmp_path / "features").iterdir())) == 2 + 6 + 6

    best = api.get("/studies/imagenet/best").json()
    download = api.get("/studies/imagenet/best/model")
    assert download.status_code == 200, download.text
    model = build_model("efficientnet_lite0", best["config"]["params"], num_classes=5)
    model.load_state_dict(torch.load(io.BytesIO(download.content), weights_only=True))
    assert model.get_buffer("input_mean").flatten().tolist() == pytest.approx([127 / 255] * 3)  # the weights' scaling
    data = load_dataset(best["config"]["dataset"], data_dir=DATA_ROOT)
    mean, std = model.get_buffer("input_mean"), model.get_buffer("input_std")
    flip = best["config"]["params"].get("eval_flip", True)
    shift = best["config"]["params"].get("eval_shift", True)
    accuracy = evaluate(model, data.test, mean, std, flip=flip, shift=shift)  # the whole model, no cached features
    assert abs(accuracy - best["metrics"]["test_accuracy"]) <= 2 / len(data.test)  # float rounding: a tie or two
    assert best["metrics"]["test_accuracy"] > 0.5  # five classes, 48 training images: chance is 0.2


def test_pretrained_weights_removed_after_the_study_was_accepted_fail_its_trial_and_the_slot_serves_on(
    pg_api, pg_db, tmp_path, monkeypatch
):
    api, db = pg_api, pg_db
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    weights = checkpoints / "resnet18-f37072fd.pth"  # stands in for torchvision's file: same names and shapes
    torch.save(build_model("resnet18", {"small_stem": False}, 1000).state_dict(), weights)
    resnet = {"kind": "pretrained", "weights": "resnet18.imagenet"}
    space = {"small_stem": False, "lr": 0.01}
    created = api.post("/studies", json=_spec("gone", objective="resnet18", search_space=space, init=resnet))
    assert created.status_code == 201, created.text
    assert api.post("/studies", json=make_spec("other", max_trials=1, priority=-1, epochs=1)).status_code == 201
    weights.unlink()
    run_slot(db)

    failed = trials(db, "gone")
    assert failed and all(t.state == TrialState.FAIL for t in failed)
    assert (
        "InitError" in failed[0].user_attrs["error"]
        and "'resnet18.imagenet' is not installed" in failed[0].user_attrs["error"]
    )
    assert [t.state for t in trials(db, "other")] == [TrialState.COMPLETE]
