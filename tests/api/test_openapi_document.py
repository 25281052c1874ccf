"""The OpenAPI document says what the API does (issue 23, item 10): what it documents
as valid the API accepts, and every answer's status and type is documented. No Redis:
the document alone, checked with jsonschema_rs (as schemathesis checks)."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs  # schemathesis uses it to check answers
import pytest

from service.app import create_app

DOC = create_app().openapi()
PROBLEM = "application/problem+json"


def valid(schema_name: str, value: Any) -> bool:
    """Whether `value` passes the named component schema of the document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOC["components"]}
    return jsonschema_rs.Draft202012Validator(schema).is_valid(value)


def test_a_spec_with_both_epochs_and_steps_is_documented_invalid() -> None:
    assert not valid("TrainingSpec", {"epochs": 2, "steps": 5})
    assert valid("TrainingSpec", {"steps": 5})
    assert valid("TrainingSpec", {"epochs": None, "steps": 5})
    assert valid("TrainingSpec", {"epochs": 3})


def test_sweep_grids_are_documented_as_the_api_checks_them() -> None:
    assert valid("SweepIn", {"grid": {"training.lr": [0.1, 0.2]}})
    for refused in ({}, {"a b": [1]}, {"seed": []}, {"1x": [1]}, {".seed": [1]}):
        assert not valid("SweepIn", {"grid": refused}), refused


def test_the_event_cursor_is_documented_as_a_pattern_not_null() -> None:
    """`Last-Event-ID: null` was a 422 the schema allowed (its `string | null`)."""
    parameters = DOC["paths"]["/v1/jobs/{job_id}/events"]["get"]["parameters"]
    for name in ("last-event-id", "after"):
        [schema] = [p["schema"] for p in parameters if p["name"] == name]
        assert schema["type"] == "string"
        assert not re.match(schema["pattern"], "null")
        assert re.match(schema["pattern"], "1-0,2-0")


def test_every_artifact_type_is_documented() -> None:
    answer = DOC["paths"]["/v1/jobs/{job_id}/artifacts/{name}"]["get"]["responses"]["200"]
    assert {"image/png", "text/csv", "application/json"} <= set(answer["content"])


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
def test_every_operation_that_takes_input_documents_its_422_as_problem_json(path: str) -> None:
    """FastAPI's own 422 entry says application/json: the `since` 422 (problem+json) was
    an undocumented type."""
    for method, operation in DOC["paths"][path].items():
        if operation.get("parameters") or operation.get("requestBody"):
            documented = operation["responses"].get("422", {}).get("content", {})
            assert PROBLEM in documented, (method, path)


def test_device_families_are_documented_as_the_spec_reads_them() -> None:
    """analog.device is anyOf the families: model may be left out (softbounds), a field
    of another family is invalid, as the API's 422 says."""
    for device in ({}, {"preset": "ecram"}, {"model": "power", "gamma": 2.0}):
        assert valid("AnalogSpec", {"device": device}), device
    for device in ({"model": "softbounds", "gamma": 0.3}, {"model": "ideal", "exp_step": {}}):
        assert not valid("AnalogSpec", {"device": device}), device
