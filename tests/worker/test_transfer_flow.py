"""Transfer learning end to end: a study fine-tunes from an earlier study's best weights.

Studies are created through the API; the trials run in this process's slot loop, with real
training on the bundled images (as a worker child runs them).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from optuna.trial import TrialState

from objectives.data import load_dataset
from objectives.evaluate import evaluate
from objectives.model import build_model
from service.settings import get_settings
from tests.conftest import DATA_ROOT, make_spec
from tests.worker.helpers import run_slot, trials

FIRST, SECOND = ["airplane", "automobile", "bird"], ["dog", "frog"]


def _dataset(classes: list[str], per_class: int) -> dict:
    return {"kind": "imagefolder", "path": "cifar10-sample", "classes": classes, "per_class": per_class}


def _spec(name: str, classes: list[str], per_class: int, **overrides) -> dict:
    return make_spec(
        name, dataset=_dataset(classes, per_class), epochs=2, sampler={"name": "random", "seed": 1}, **overrides
    )


def test_a_study_fine_tunes_from_an_earlier_study_s_best_model(api, db):
    assert api.post("/studies", json=_spec("pre", FIRST, 30, max_trials=2)).status_code == 201
    run_slot(db)
    best = api.get("/studies/pre/best").json()

    # the best model: weights that load with weights_only=True and reproduce the reported test accuracy
    download = api.get("/studies/pre/best/model")
    assert download.status_code == 200, download.text
    model = build_model("cnn", best["config"]["params"], num_classes=3)
    model.load_state_dict(torch.load(io.BytesIO(download.content), weights_only=True))
    data = load_dataset(best["config"]["dataset"], data_dir=DATA_ROOT)
    mean, std = model.get_buffer("input_mean"), model.get_buffer("input_std")
    views = {
        "flip": best["config"]["params"].get("eval_flip", True),
        "shift": best["config"]["params"].get("eval_shift", True),
    }
    assert evaluate(model, data.test, mean, std, **views) == best["metrics"]["test_accuracy"]

    space = {**make_spec()["search_space"], "freeze": {"type": "categorical", "choices": [0, 4]}}
    space["backbone_lr_scale"] = {"type": "float", "low": 0.01, "high": 1.0, "log": True}
    fine_tune = _spec(
        "ft",
        SECOND,
        20,
        max_trials=3,
        search_space=space,
        init={"kind": "study", "study": "pre"},
        enqueue_from={"study": "pre", "top": 1},
    )
    wider = api.post("/studies", json={**fine_tune, "search_space": {**space, "width": 0.25}})
    assert wider.status_code == 422, wider.text  # pre trained width 0.125: its weights fit no other width
    assert wider.json()["detail"][0]["loc"] == ["body", "init", "study"]
    assert "has shape (8, 3, 3, 3), the model needs (16, 3, 3, 3)" in wider.text
    created = api.post("/studies", json=fine_tune)
    assert created.status_code == 201, created.text
    init = created.json()["spec"]["init"]
    assert init["trial"] == best["trial_number"] and init["weights"].endswith(
        f"trial-{best['trial_number']}.weights.pt"
    )
    enqueued = created.json()["spec"]["enqueue"]
    assert enqueued == [
        {k: best["params"][k] for k in ("lr", "batch_size", "aug_strength")}
    ]  # pre's best, in this space
    run_slot(db)

    done = trials(db, "ft")
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["config"]["init"] == init for t in done)
    assert done[0].params == {**enqueued[0], **{k: done[0].params[k] for k in ("freeze", "backbone_lr_scale")}}
    assert api.get("/studies/ft/best/model").status_code == 200

    refused = api.delete("/studies/pre")  # ft, and `hpo train` of its best config, start from pre's weights
    assert refused.status_code == 409 and "study 'ft' starts from its weights" in refused.text
    assert api.get("/studies/pre/best/model").status_code == 200
    assert api.delete("/studies/ft").status_code == 204
    assert api.delete("/studies/pre").status_code == 204


def test_weights_that_vanish_after_the_study_was_accepted_fail_its_trial_and_the_slot_serves_on(api, db):
    assert api.post("/studies", json=_spec("pre", FIRST, 20, max_trials=1)).status_code == 201
    run_slot(db)
    created = api.post("/studies", json=_spec("ft", SECOND, 20, max_trials=1, init={"kind": "study", "study": "pre"}))
    assert created.status_code == 201, created.text
    assert api.post("/studies", json=_spec("other", SECOND, 20, max_trials=1, priority=-1)).status_code == 201
    (Path(get_settings().artifact_dir).resolve() / created.json()["spec"]["init"]["weights"]).unlink()
    run_slot(db)

    [failed] = trials(db, "ft")
    assert failed.state == TrialState.FAIL
    assert "InitError" in failed.user_attrs["error"] and "does not exist" in failed.user_attrs["error"]
    assert [t.state for t in trials(db, "other")] == [TrialState.COMPLETE]
