"""Property-based fuzzing of the API from its own OpenAPI schema: no input may cause a 5xx, and
every answer is one the schema documents (status code, content type, body schema)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api import create_app

EXAMPLES = int(os.environ.get("HPO_FUZZ_EXAMPLES", "25"))  # per operation and database; `make fuzz` runs 1000
app = create_app()
schema = schemathesis.openapi.from_dict(app.openapi())  # from the app itself, without starting it here
schema.app = app


@pytest.fixture
def started(db_url):
    """The app started on this test's fresh database (its lifespan binds the Database)."""
    with TestClient(app):
        yield


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error_or_an_undocumented_answer(case, started):
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Sequences(schema.as_state_machine()):  # type: ignore[misc]
    """Random sequences of calls. The schema declares no links between operations yet, and few
    generated specs are valid, so these seldom reach a live study: the read/delete races are
    tested by tests/service/test_api_failures.py, not here."""

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(response, checks=CHECKS)


def test_sequences_of_calls_cause_no_server_error_or_undocumented_answer(started):
    Sequences.run(
        settings=settings(
            max_examples=max(5, EXAMPLES // 2),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
