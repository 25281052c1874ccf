"""The OpenAPI document says what the API does (issue 23, item 10): what it documents
as valid the API accepts, and every answer's status and type is documented. No Redis:
the document alone, checked with jsonschema_rs (as schemathesis checks)."""

from __future__ import annotations

import ast
import re
from typing import Any

import jsonschema_rs  # schemathesis uses it to check answers
import pytest

from service import schemas
from service.app import create_app
from tests.conftest import ROOT

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


def test_the_apis_bodies_are_defined_in_service_schemas_only() -> None:
    """Request and response models live in one module (issue 22, item 4), so the
    document's components are found in one place, not spread over the routes."""
    defined_elsewhere = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path.name == "schemas.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            bases = [b.id for b in getattr(node, "bases", []) if isinstance(b, ast.Name)]
            if isinstance(node, ast.ClassDef) and "BaseModel" in bases:
                defined_elsewhere.append(f"{path.name}: {node.name}")
    assert defined_elsewhere == []
    spec_models = {name for name in DOC["components"]["schemas"] if name.endswith("Spec")}
    for name in set(DOC["components"]["schemas"]) - spec_models:
        assert hasattr(schemas, name), name
