"""Every endpoint and status code, against PostgreSQL and SQLite."""

from __future__ import annotations

import json
import time

import optuna
import pytest
from sqlalchemy import event, select

from service.db.database import Database
from service.db.models import StudyRecord
from service.optuna.stop_stats import stop_stats
from tests.conftest import make_spec


def _optuna_names(db: Database) -> list[str]:
    return optuna.get_all_study_names(storage=db.storage)


def test_create_then_get_and_list(api, db):
    created = api.post("/studies", json=make_spec(enqueue=[{"lr": 0.001, "batch_size": 128, "aug_strength": 0.5}]))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "cifar-search" and body["status"] == "running"
    assert body["max_trials"] == 4 and body["finished"] == 0
    assert body["counts"] == {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 1}
    assert body["slots_taken"] == 1  # the enqueued warm start takes a slot
    assert body["dashboard_url"].endswith("/dashboard/studies/1")
    assert body["spec"]["search_space"]["width"] == 0.125
    assert api.get("/studies/cifar-search").json()["name"] == "cifar-search"
    assert [s["name"] for s in api.get("/studies").json()] == ["cifar-search"]
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    assert study.user_attrs["hpo_spec"]["max_trials"] == 4  # mirrored for optuna-dashboard


def test_every_answer_that_shows_a_study_shows_it_alike(api, db):
    """POST, GET /studies/{name}, GET /studies and the status changes read a study one way
    (service/studies/read.py): the same fields, the same values."""
    created = api.post("/studies", json=make_spec(enqueue=[{"lr": 0.001, "batch_size": 128, "aug_strength": 0.5}]))
    assert created.status_code == 201, created.text
    assert api.get("/studies/cifar-search").json() == created.json()
    assert api.get("/studies").json() == [created.json()]
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    study.tell(study.ask(), 0.25)
    paused = api.post("/studies/cifar-search/pause").json()
    assert paused["status"] == "paused" and paused["counts"]["complete"] == 1 and paused["best_value"] == 0.25
    assert api.get("/studies/cifar-search").json() == paused
    assert api.get("/studies").json() == [paused]


def test_a_study_shows_its_compute_seconds_as_its_compute_budget_counts_them(api, db):
    """``compute_s``: the finished trials' durations summed, the figure ``stop_when.max_compute_s``
    is checked against (service/optuna/stop_stats.py), so a user sees how much of it is spent."""
    assert api.post("/studies", json=make_spec()).json()["compute_s"] == 0
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    running = study.ask()
    for _ in range(2):
        trial = study.ask()
        time.sleep(0.05)
        study.tell(trial, 0.5)
    shown = api.get("/studies/cifar-search").json()
    with db.session() as session:
        counted = stop_stats(session, study._study_id, None).compute_s
    assert shown["compute_s"] == pytest.approx(counted, abs=0.002) and shown["compute_s"] >= 0.1
    assert api.get("/studies").json()[0]["compute_s"] == shown["compute_s"]
    study.tell(running, 0.6)
    assert api.get("/studies/cifar-search").json()["compute_s"] > shown["compute_s"]


def test_defaults_fill_the_search_space(api):
    spec = make_spec()
    del spec["search_space"], spec["sampler"], spec["pruner"]
    body = api.post("/studies", json=spec).json()
    assert body["spec"]["search_space"]["lr"] == {
        "type": "float",
        "low": 0.001,
        "high": 0.02,
        "log": True,
        "step": None,
    }
    assert body["spec"]["search_space"]["batch_size"]["choices"] == [64, 128, 256]
    assert body["spec"]["sampler"]["name"] == "tpe" and body["spec"]["pruner"]["name"] == "hyperband"


def test_duplicate_name_is_409_and_keeps_the_first(api, db):
    assert api.post("/studies", json=make_spec(max_trials=4)).status_code == 201
    again = api.post("/studies", json=make_spec(max_trials=9))
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]
    assert api.get("/studies/cifar-search").json()["max_trials"] == 4
    assert _optuna_names(db) == ["cifar-search"]


INVALID = {
    "low above high": ({"search_space": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "low (0.1) must be less"),
    "unknown field": ({"colour": "red"}, "Extra inputs are not permitted"),
    "bad name": ({"name": "a b/c"}, "String should match pattern"),
    "unknown objective": ({"objective": "resnet"}, "unknown objective 'resnet'"),
    "unknown parameter": ({"search_space": {"dropout": 0.5}}, "search_space.dropout: not a parameter"),
    "parent path": ({"dataset": {"kind": "imagefolder", "path": "../../etc"}}, "must not contain '..'"),
    "absolute path": ({"dataset": {"kind": "imagefolder", "path": "/etc"}}, "must be relative"),
    "log with zero low": (
        {"search_space": {"aug_strength": {"type": "float", "low": 0, "high": 1, "log": True}}},
        "log range needs low > 0",
    ),
    "a number for a yes/no parameter": ({"search_space": {"eval_flip": 1}}, "eval_flip must be one of [True, False]"),
    "lr above 10": ({"search_space": {"lr": {"type": "float", "low": 1, "high": 20}}}, "lr must lie in"),
    "batch size too big": (
        {"search_space": {"batch_size": {"type": "categorical", "choices": [64, 8192]}}},
        "batch_size must lie in",
    ),
    "empty choices": ({"search_space": {"batch_size": {"type": "categorical", "choices": []}}}, "at least 1 item"),
    "zero epochs": ({"epochs": 0}, "greater than or equal to 1"),
    "zero trials": ({"max_trials": 0}, "greater than or equal to 1"),
    "enqueued outside space": ({"enqueue": [{"lr": 0.5}]}, "enqueue[0].lr: 0.5 lies outside"),
    "grid over a float range": ({"sampler": {"name": "grid"}}, "sampler grid needs categorical entries"),
    "unknown sampler option": ({"sampler": {"name": "tpe", "gamma": 3}}, "Extra inputs are not permitted"),
    "string for a number": ({"epochs": "3"}, "Input should be a valid integer"),
    "bool for a number": ({"max_trials": True}, "Input should be a valid integer"),
    "string for a float": ({"search_space": {"width": "0.5"}}, "search_space.width"),
    "dot as a name": ({"name": "."}, "besides dots"),
    "dot dot as a name": ({"name": ".."}, "besides dots"),
    "float range for int parameter": (
        {"search_space": {"batch_size": {"type": "float", "low": 16, "high": 64}}},
        "integer parameter",
    ),
}


@pytest.mark.parametrize("change", INVALID.values(), ids=INVALID.keys())
def test_invalid_spec_is_422_and_writes_nothing(api, db, change):
    overrides, message = change
    answer = api.post("/studies", json=make_spec(**overrides))
    assert answer.status_code == 422, answer.text
    assert message in answer.text
    assert api.get("/studies").json() == []
    assert _optuna_names(db) == []


def test_symlink_out_of_data_dir_is_422(api, tmp_path, monkeypatch):
    from service.settings import get_settings

    root = tmp_path / "data"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    monkeypatch.setenv("HPO_DATA_DIR", str(root))
    get_settings.cache_clear()
    answer = api.post("/studies", json=make_spec(dataset={"kind": "imagefolder", "path": "escape"}))
    assert answer.status_code == 422 and "symlink" in answer.text


def test_unknown_study_is_404_everywhere(api):
    for method, path in [
        ("get", "/studies/nope"),
        ("get", "/studies/nope/trials"),
        ("get", "/studies/nope/best"),
        ("post", "/studies/nope/pause"),
        ("delete", "/studies/nope"),
    ]:
        answer = api.request(method.upper(), path)
        assert answer.status_code == 404, (method, path)
        assert "no study named 'nope'" in answer.json()["detail"]


def test_pause_resume_stop_transitions(api):
    api.post("/studies", json=make_spec())
    assert api.post("/studies/cifar-search/pause").json()["status"] == "paused"
    again = api.post("/studies/cifar-search/pause")
    assert again.status_code == 409 and "it is paused" in again.json()["detail"]
    assert api.post("/studies/cifar-search/resume").json()["status"] == "running"
    assert api.post("/studies/cifar-search/stop").json()["status"] == "stopped"
    assert api.post("/studies/cifar-search/resume").json()["status"] == "running"


def test_best_is_409_before_any_completed_trial_then_returns_the_config(api, db):
    api.post("/studies", json=make_spec())
    early = api.get("/studies/cifar-search/best")
    assert early.status_code == 409 and "no completed trial" in early.json()["detail"]

    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    for value in (0.31, 0.42):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.set_user_attr("metrics", {"test_accuracy": value - 0.01})
        study.tell(trial, value)
    best = api.get("/studies/cifar-search/best").json()
    assert best["trial_number"] == 1 and best["value"] == 0.42
    assert best["config"]["params"]["lr"] == best["params"]["lr"]
    assert best["config"]["params"]["width"] == 0.125  # fixed entries belong to the config
    assert best["config"]["dataset"]["path"] == "cifar10-sample" and best["config"]["epochs"] == 2
    assert best["metrics"] == {"test_accuracy": pytest.approx(0.41)}
    status = api.get("/studies/cifar-search").json()
    assert status["best_value"] == 0.42 and status["counts"]["complete"] == 2 and status["finished"] == 2


def test_best_follows_the_trials_finished_since_its_last_answer(api, db):
    """GET /best reads the trials finished since it last looked (the API's tallies), not every value."""
    api.post("/studies", json=make_spec(max_trials=20))
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)

    def finish(trial: optuna.Trial, value: float) -> None:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        study.tell(trial, value)

    def best_number() -> int:
        return api.get("/studies/cifar-search/best").json()["trial_number"]

    for value in (0.3, 0.5, 0.2):
        finish(study.ask(), value)
    assert best_number() == 1
    running = study.ask()  # trial 3: unfinished at the next answer, then the best
    finish(study.ask(), 0.5)
    assert best_number() == 1  # of equal values, the earlier trial
    finish(running, 0.9)
    assert best_number() == 3 == study.best_trial.number


def test_trials_are_paginated_with_intermediate_values(api, db):
    api.post("/studies", json=make_spec())
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    for i in range(5):
        trial = study.ask()
        trial.report(0.1 * i, step=1)
        study.tell(trial, 0.1 * i)
    page = api.get("/studies/cifar-search/trials", params={"offset": 2, "limit": 2}).json()
    assert page["total"] == 5 and [t["number"] for t in page["trials"]] == [2, 3]
    assert page["trials"][0]["intermediate_values"] == {"1": pytest.approx(0.2)}
    assert page["trials"][0]["state"] == "complete"
    assert api.get("/studies/cifar-search/trials", params={"limit": 0}).status_code == 422
    last = api.get("/studies/cifar-search/trials", params={"offset": 2**31 - 1}).json()  # the largest trial number
    assert last["total"] == 5 and last["trials"] == []
    beyond = api.get("/studies/cifar-search/trials", params={"offset": 2**63})  # found by the fuzzer: a 500 on SQLite
    assert beyond.status_code == 422 and beyond.json()["detail"][0]["loc"] == ["query", "offset"]


def test_delete_removes_study_and_optuna_study(api, db):
    api.post("/studies", json=make_spec())
    assert api.delete("/studies/cifar-search").status_code == 204
    assert api.get("/studies/cifar-search").status_code == 404
    assert _optuna_names(db) == []
    assert api.post("/studies", json=make_spec()).status_code == 201  # the name is free again


def test_the_list_shows_a_study_created_again_under_its_old_name_with_its_new_spec(api):
    """GET /studies decodes each spec once per process (service/studies/read.SpecCache)."""
    api.post("/studies", json=make_spec(epochs=2))
    assert api.get("/studies").json()[0]["spec"]["epochs"] == 2
    api.delete("/studies/cifar-search")
    assert api.get("/studies").json() == []
    api.post("/studies", json=make_spec(epochs=3))
    assert [s["spec"]["epochs"] for s in api.get("/studies").json()] == [3]


def test_the_list_marks_a_study_whose_budget_is_spent_completed(api, db):
    api.post("/studies", json=make_spec(max_trials=1))
    before = api.get("/studies/cifar-search").json()
    study = optuna.load_study(study_name="cifar-search", storage=db.storage)
    study.tell(study.ask(), 0.5)  # the budget's one trial, finished without a worker
    listed = api.get("/studies").json()[0]
    assert listed["status"] == "completed" and listed["finished"] == 1 and listed["best_value"] == 0.5
    assert listed["updated_at"] > before["updated_at"]
    with db.sessions() as session:  # written, not only shown
        assert session.scalars(select(StudyRecord.status)).one() == "completed"


def test_one_study_and_the_list_count_its_trials_alike_as_they_change(api, db):
    """GET /studies/{name} and GET /studies share the API's tallies (service/studies/tallies.py):
    reading one study must neither lose nor double-count what the list has counted."""
    for name in ("a", "b"):
        api.post("/studies", json=make_spec(name, max_trials=10))
    a, b = (optuna.load_study(study_name=name, storage=db.storage) for name in ("a", "b"))

    def shown() -> dict[str, tuple]:
        one = {name: api.get(f"/studies/{name}").json() for name in ("a", "b")}
        listed = {s["name"]: s for s in api.get("/studies").json()}
        assert {n: (s["counts"], s["best_value"]) for n, s in one.items()} == {
            n: (s["counts"], s["best_value"]) for n, s in listed.items()
        }
        return {n: (s["counts"]["complete"], s["counts"]["running"], s["best_value"]) for n, s in listed.items()}

    running = a.ask()
    a.tell(a.ask(), 0.4)
    assert shown() == {"a": (1, 1, 0.4), "b": (0, 0, None)}
    a.tell(running, 0.6)
    b.tell(b.ask(), 0.2)
    assert api.get("/studies/a").json()["counts"]["complete"] == 2  # read alone first
    assert shown() == {"a": (2, 0, 0.6), "b": (1, 0, 0.2)}


def test_healthz(api):
    assert api.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_start_up_moves_its_objects_out_of_the_collector_s_way(api):
    """A full collection over everything the API imported took 80-100 ms, the tail of its reads
    (docs/benchmarks.md §7); frozen at start-up, those objects are not walked again."""
    import gc

    assert gc.get_freeze_count() > 50_000


def test_listing_studies_costs_the_same_queries_for_one_study_as_for_six(api):
    statements: list[str] = []
    engine = api.app.state.database.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def queries_to_list() -> int:
        statements.clear()
        assert api.get("/studies").status_code == 200
        return len(statements)

    api.post("/studies", json=make_spec("one"))
    with_one = queries_to_list()
    for i in range(5):
        api.post("/studies", json=make_spec(f"more-{i}", enqueue=[{"lr": 0.001}]))
    assert queries_to_list() == with_one
    assert with_one <= 2, statements  # the studies with their trial counts: one SELECT (and its commit)
    listed = {s["name"]: s for s in api.get("/studies").json()}
    assert listed["more-3"]["counts"]["waiting"] == 1 and listed["one"]["counts"]["waiting"] == 0


def test_a_page_of_trials_costs_the_same_queries_whatever_the_study_holds(api):
    statements: list[str] = []
    engine = api.app.state.database.engine
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    def queries_for_page(name: str, offset: int) -> tuple[int, dict]:
        statements.clear()
        answer = api.get(f"/studies/{name}/trials", params={"offset": offset, "limit": 2})
        assert answer.status_code == 200
        return len(statements), answer.json()

    # Optuna loads a trial's parts 500 trials per statement: 600 trials is where a whole-study read grows.
    configs = [{"lr": 0.0001 * (i + 1)} for i in range(600)]
    assert api.post("/studies", json=make_spec("small", enqueue=configs[:3])).status_code == 201
    assert api.post("/studies", json=make_spec("large", max_trials=600, enqueue=configs)).status_code == 201
    small, _ = queries_for_page("small", 0)
    large, page = queries_for_page("large", 597)
    assert large == small, statements
    assert page["total"] == 600 and [t["number"] for t in page["trials"]] == [597, 598]
    assert {t["state"] for t in page["trials"]} == {"waiting"}
    assert queries_for_page("large", 600)[1]["trials"] == []  # past the end: an empty page


NON_FINITE = {  # where a NaN or an infinity can hide in a spec, and the field the 422 must name
    "fixed value": ('"search_space": {"width": NaN}', "width"),
    "range low": ('"search_space": {"lr": {"type": "float", "low": NaN, "high": 0.1}}', "low"),
    "range high": ('"search_space": {"lr": {"type": "float", "low": 0.001, "high": Infinity}}', "high"),
    "step": ('"search_space": {"aug_strength": {"type": "float", "low": 0, "high": 1, "step": NaN}}', "step"),
    "choice": ('"search_space": {"aug_strength": {"type": "categorical", "choices": [0.5, -Infinity]}}', "choices"),
    "val_fraction": (
        '"dataset": {"kind": "imagefolder", "path": "cifar10-sample", "val_fraction": NaN}',
        "val_fraction",
    ),
    "sampler option": ('"sampler": {"name": "cmaes", "sigma0": Infinity}', "sigma0"),
    "enqueued value": ('"enqueue": [{"lr": NaN}]', "enqueue"),
}


@pytest.mark.parametrize("fragment", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_nan_and_infinity_are_422s_naming_the_field(api, db, fragment):
    body, field = fragment
    base = make_spec()
    key = body.split('"')[1]
    base.pop(key, None)
    text = json.dumps(base)[:-1] + ", " + body + "}"  # NaN and Infinity are not JSON; Python's parser reads them
    answer = api.post("/studies", content=text, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert api.get("/studies").json() == [] and _optuna_names(db) == []


def test_a_body_over_a_megabyte_is_refused_before_it_is_parsed(api):
    huge = make_spec(enqueue=[{"lr": 0.001}] * 80_000)  # about 1.2 MB
    assert api.post("/studies", json=huge).status_code == 413

    def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(40):
            yield b" " * 50_000

    answer = api.post("/studies", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert api.get("/studies").json() == []


def test_a_body_that_is_not_utf8_is_a_documented_400(api):
    answer = api.post("/studies", content=b"\xff\xfeg", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "detail" in answer.json()
    documented = api.get("/openapi.json").json()["paths"]["/studies"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "422", "503"} <= set(documented)


def test_a_patch_whose_body_is_not_utf8_or_too_big_is_a_documented_refusal_and_changes_nothing(api):
    api.post("/studies", json=make_spec())
    answer = api.patch("/studies/cifar-search", content=b"\xff\xfeg", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "detail" in answer.json()  # the fuzzer found this one undocumented
    assert api.patch("/studies/cifar-search", json={"max_trials": 5, "pad": "x" * 1_100_000}).status_code == 413
    documented = api.get("/openapi.json").json()["paths"]["/studies/{name}"]["patch"]["responses"]
    assert {"400", "404", "409", "413", "422"} <= set(documented)
    assert api.get("/studies/cifar-search").json()["max_trials"] == make_spec()["max_trials"]


def test_the_dashboard_names_the_objective(api):
    """optuna-dashboard shows "val_accuracy", not "Objective 0", as what a trial's value is."""
    api.post("/studies", json=make_spec())
    detail = api.get("/api/studies/1").json()
    assert detail["name"] == "cifar-search" and detail["objective_names"] == ["val_accuracy"]
