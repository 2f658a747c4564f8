"""GET /studies/{name}/trials.csv and .jsonl: every trial, in every state, round-trips with stable
columns; an unknown study is a 404; the viewer token may read them; `hpo study export` writes them."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from service.studies import export
from service.studies.export import METRICS
from tests.conftest import make_spec
from tests.service.conftest import KFOLD_METRICS, study_with_every_state


def test_the_csv_and_jsonl_round_trip_every_trial_in_every_state(api, db, monkeypatch):
    monkeypatch.setattr(export, "PAGE", 2)  # three pages of trials, streamed one after the other
    assert api.post("/studies", json=make_spec()).status_code == 201
    study = study_with_every_state(db)

    answer = api.get("/studies/cifar-search/trials.csv")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="cifar-search-trials.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    searched = ["param.aug_strength", "param.batch_size", "param.lr"]  # the spec's searched parameters
    assert list(rows[0])[:6] == ["number", "state", "value", *searched]
    assert [r["number"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["state"] for r in rows] == ["complete", "pruned", "fail", "running", "complete"]
    trials = study.get_trials()
    assert float(rows[0]["param.lr"]) == trials[0].params["lr"] and rows[1]["param.lr"] == ""
    assert float(rows[0]["value"]) == 0.61 and float(rows[4]["value"]) == 0.7
    assert float(rows[1]["value"]) == 0.2 and rows[2]["value"] == ""  # pruned: its last report, as Optuna keeps it
    assert json.loads(rows[0]["metric.fold_val_accuracies"]) == [0.6, 0.62]
    assert rows[4]["metric.fold_val_accuracies"] == "" and rows[4]["metric.device"] == "cpu"
    assert rows[0]["epochs_reported"] == "2" and float(rows[0]["last_val_accuracy"]) == 0.61
    assert rows[2]["error"].startswith("InitError") and rows[3]["datetime_complete"] == ""
    assert float(rows[0]["duration_s"]) >= 0

    lines = api.get("/studies/cifar-search/trials.jsonl").text.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["number"] for o in objects] == [0, 1, 2, 3, 4] and list(objects[0]) == list(rows[0])
    assert objects[0]["metric.fold_test_accuracies"] == [0.61, 0.64] and objects[3]["value"] is None
    assert {k: v for k, v in objects[0].items() if k.startswith("metric.")} == {
        f"metric.{k}": v for k, v in KFOLD_METRICS.items()
    }


def test_the_metric_columns_are_the_training_result_s_fields():
    from objectives.train import TrainResult

    assert tuple(field.name for field in dataclasses.fields(TrainResult)) == METRICS


def test_an_unknown_study_is_a_404_and_an_empty_one_is_a_header(api):
    for suffix in ("csv", "jsonl"):
        answer = api.get(f"/studies/nowhere/trials.{suffix}")
        assert answer.status_code == 404 and "no study named 'nowhere'" in answer.text
    assert api.post("/studies", json=make_spec("empty")).status_code == 201
    assert api.get("/studies/empty/trials.csv").text.startswith("number,state,value,param.aug_strength,")
    assert api.get("/studies/empty/trials.jsonl").text == ""
