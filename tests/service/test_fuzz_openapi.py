"""Property-based fuzzing of the API from its own OpenAPI schema: no input may cause a 5xx, and
every answer is one the schema documents (status code, content type, body schema).

Schemathesis generates each request from the schema. Its random study specs are almost never valid,
so ``POST /studies`` bodies are drawn from a mix (see ``study_bodies``): schemathesis' own, valid specs
over a few shared names (so creates collide and later calls find live studies), and valid specs with
one field broken the ways that once gave 500s: NaN/Infinity, a string or bool for a number, a body
over the 1 MB limit. The state machine chains calls through the OpenAPI links the schema declares
(POST /studies → GET, trials, best, pause, resume, stop, report, export, DELETE /studies/{name}),
so reads and changes follow creates and deletes of the same study; each sequence starts from
one live study, a name in a path is one of the names the valid creates use two times in three,
and the test counts how many sequences reached a live study. (Concurrent races are tests/service/test_api_failures.py.)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api import create_app
from service.api.app import MAX_BODY_BYTES
from tests.conftest import make_spec

EXAMPLES = int(os.environ.get("HPO_FUZZ_EXAMPLES", "25"))  # per operation and database; `make fuzz` runs 1000
# `make test` runs the same bounded sequences every time (a CI failure is then reproducible, and
# the check that they reach live studies cannot flake); `make fuzz` draws new ones on every run.
DERANDOMIZE = "HPO_FUZZ_EXAMPLES" not in os.environ
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NAMES = ["fuzz-a", "fuzz-b", "fuzz-c"]  # few, so that creates collide and name routes find live studies
NUMERIC_FIELDS = [  # where a number goes in a valid spec
    ("epochs",),
    ("max_trials",),
    ("priority",),
    ("seed",),
    ("dataset", "limit"),
    ("dataset", "val_fraction"),
    ("search_space", "width"),
    ("search_space", "lr", "low"),
    ("search_space", "lr", "high"),
]

app = create_app()
schema = schemathesis.openapi.from_dict(app.openapi())  # from the app itself, without starting it here
schema.app = app


def _valid_specs() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda name, max_trials, priority: make_spec(name, max_trials=max_trials, priority=priority),
        st.sampled_from(NAMES),
        st.integers(1, 8),
        st.integers(-3, 3),
    )


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


def _non_finite(spec: dict[str, Any], path: tuple[str, ...], value: float) -> bytes:
    # Python's json writes NaN/Infinity tokens; HTTP clients refuse to, so the body goes out as bytes.
    return json.dumps(_set(spec, path, value)).encode()


def _oversized(spec: dict[str, Any]) -> bytes:
    return json.dumps({**spec, "padding": "x" * MAX_BODY_BYTES}).encode()


def study_bodies(generated: Any) -> st.SearchStrategy[Any]:
    """POST /studies bodies: schemathesis' own, valid specs, and valid specs with one field broken."""
    fields = st.sampled_from(NUMERIC_FIELDS)
    return st.one_of(
        st.just(generated),
        _valid_specs(),
        _valid_specs(),  # twice: a third of the bodies are valid
        st.builds(_non_finite, _valid_specs(), fields, st.sampled_from([float("nan"), float("inf"), float("-inf")])),
        st.builds(_set, _valid_specs(), fields, st.sampled_from(["3", "0.5", True, False, None, [], {}])),
        st.builds(_oversized, _valid_specs()),
    )


@schema.hook("flatmap_body")
def _study_bodies(context: Any, body: Any) -> st.SearchStrategy[Any]:
    operation = context.operation
    if operation is not None and operation.method.upper() == "POST" and operation.path == "/studies":
        return study_bodies(body)
    return st.just(body)


@schema.hook("flatmap_path_parameters")
def _known_names(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """A study's name is one of the few a valid create uses (a live study in a sequence) two times in three."""
    if not path_parameters or "name" not in path_parameters:
        return st.just(path_parameters)
    names = st.one_of(st.just(path_parameters["name"]), st.sampled_from(NAMES), st.sampled_from(NAMES))
    return names.map(lambda name: {**path_parameters, "name": name})


@pytest.fixture
def started(db_url):
    """The app started on this test's fresh database (its lifespan binds the Database)."""
    with TestClient(app):
        yield


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error_or_an_undocumented_answer(case, started):
    case.call_and_validate(checks=CHECKS)


ANSWERS: Counter[tuple[str, int]] = Counter()  # (operation, status) of every call the state machine made
SEQUENCES: Counter[bool] = Counter()  # per sequence: did a call by name find a live study?
LIVE = (200, 204, 409)  # a route by name found the study (409: found, in a state that refuses the call)


class Sequences(schema.as_state_machine()):  # type: ignore[misc]
    """Random sequences of calls chained through the inferred links, each from an empty database:
    Hypothesis replays a failing sequence to shrink it, and a replay must meet the same state."""

    touched_live = False

    @initialize()
    def create_a_live_study(self) -> None:
        """Each sequence starts with a live study (its calls may create more, and delete them)."""
        TestClient(app).post("/studies", json=make_spec(NAMES[0], max_trials=3))

    def teardown(self) -> None:
        SEQUENCES[self.touched_live] += 1
        client = TestClient(app)  # no `with`: the app is started already (fixture `started`)
        for study in client.get("/studies").json():
            client.delete(f"/studies/{study['name']}")

    def after_call(self, response, case) -> None:
        ANSWERS[(f"{case.method.upper()} {case.operation.path}", response.status_code)] += 1
        if "{name}" in case.operation.path and response.status_code in LIVE:
            self.touched_live = True

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(response, checks=CHECKS)


def test_sequences_of_calls_cause_no_server_error_or_undocumented_answer(started):
    ANSWERS.clear()
    SEQUENCES.clear()
    Sequences.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=10,
            derandomize=DERANDOMIZE,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The sequences reached live studies: most of them called a route by name on a study that existed,
    # and among them the reads, the status changes, the report and the delete.
    print(f"sequences {SEQUENCES[True]} of {sum(SEQUENCES.values())} touched a live study; answers {dict(ANSWERS)}")
    assert SEQUENCES[True] > SEQUENCES[False], (SEQUENCES, ANSWERS)
    found = {op for (op, code), n in ANSWERS.items() if "{name}" in op and code in LIVE}
    wanted = {"GET /studies/{name}", "POST /studies/{name}/pause", "DELETE /studies/{name}"}
    assert wanted <= found, ANSWERS
