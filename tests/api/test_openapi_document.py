"""The OpenAPI document says what the API does (issue 23, item 10): what it documents
as valid the API accepts, and every answer's status and type is documented. The
document alone, checked with jsonschema_rs (as schemathesis checks), and where only an
answer tells, the API's answers over HTTP (live_service)."""

from __future__ import annotations

import ast
import functools
import operator
import re
from typing import Any

import httpx
import jsonschema_rs  # schemathesis uses it to check answers
import pytest
from pydantic import ValidationError

from aimc_spec.devices import DEVICE_MODELS
from aimc_spec.spec import SpecError, parse_spec
from aimc_spec.sweep import expand
from service import schemas
from service.app import create_app
from service.schemas import SweepIn
from tests.conftest import ROOT, LiveService

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
    assert valid("SweepIn", {"grid": {"optimizer.lr": [0.1, 0.2]}})
    for refused in ({}, {"a b": [1]}, {"seed": []}, {"1x": [1]}, {".seed": [1]}):
        assert not valid("SweepIn", {"grid": refused}), refused


def test_every_grid_key_the_document_allows_the_api_takes() -> None:
    """Grid keys were documented by a pattern, so `training.lr` or `foo` passed the
    schema and the API refused them. The document now lists the spec's field paths,
    and a grid over each one (at the value a spec has there: the default spec's, or one
    whose device is of a family with that field) is a valid body that expands into its
    job, as the sweeps route does with it."""
    allowed = DOC["components"]["schemas"]["SweepIn"]["properties"]["grid"]["propertyNames"]
    bases = []
    for model in DEVICE_MODELS:  # a device field belongs to some families only
        base = parse_spec({"analog": {"device": {"model": model}}}).model_dump(mode="json")
        base["optimizer"]["lr_decay"] = {"every_epochs": 1, "factor": 0.5}  # its fields too
        bases.append(base)
    for cell in ({"kind": "one_sided"}, {"kind": "vector"}):  # a unit cell's fields too
        bases.append(parse_spec({"analog": {"unit_cell": cell}}).model_dump(mode="json"))
    assert {"seed", "optimizer.lr", "analog.device", "analog.device.states"} <= {*allowed["enum"]}
    for path in allowed["enum"]:
        base, value = next(found for b in bases if (found := _at(b, path)) is not None)
        body = {"spec": base, "grid": {path: [value]}}
        assert valid("SweepIn", body), path
        taken = SweepIn.model_validate(body)
        assert len(expand(taken.spec, taken.grid)) == 1, path


def _at(spec: dict[str, Any], path: str) -> tuple[dict[str, Any], Any] | None:
    """(spec, its value at the dotted path), None if the spec has no such field."""
    try:
        return spec, functools.reduce(operator.getitem, path.split("."), spec)
    except (KeyError, TypeError):  # no such field, or an absent block (unit_cell: null)
        return None


@pytest.mark.parametrize(
    ("key", "nearest"),
    [
        ("training.lr", "'optimizer.lr'"),
        ("pipeline.shedule", "'pipeline.schedule'"),
        ("gamma", "'analog.device.gamma' or 'optimizer.tiki_taka.gamma' or 'optimizer.ttv2.gamma'"),
        ("foo.bar", None),
        ("a b", None),
    ],
)
def test_a_grid_key_the_document_refuses_the_api_refuses(key: str, nearest: str | None) -> None:
    """...with a 422 naming the nearest allowed key (the body model and, for a grid that
    comes another way, expand() alike)."""
    assert not valid("SweepIn", {"grid": {key: [1]}})
    with pytest.raises(ValidationError) as by_model:
        SweepIn.model_validate({"grid": {key: [1]}})
    with pytest.raises(SpecError) as by_expand:
        expand({}, {key: [1]})
    [error] = by_model.value.errors()
    [(where, message)] = by_expand.value.problems
    assert where == f"grid.{key}" and message == error["msg"]
    assert message.startswith("not a job spec field's dotted path")
    if nearest is not None:
        assert message.endswith(f"; did you mean {nearest}?")


def test_every_error_is_documented_as_problem_json_with_its_schema() -> None:
    """Errors are sent as application/problem+json (service/errors.py); the document
    filed their schema under application/json, a type no error is sent as, and left
    problem+json without one."""
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, operations in DOC["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status[0] in "45" and "content" in answer:
                    assert answer["content"] == {PROBLEM: {"schema": problem}}, (method, path)


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


@pytest.mark.parametrize("content_type", ["application/octet-stream", None, "text/plain"])
def test_bytes_that_are_no_npz_get_the_documented_422(
    live_service: LiveService, content_type: str | None
) -> None:
    """An upload is read as the archive's bytes whatever its Content-Type; bytes that are
    no .npz are a 422 of the documented type and schema, naming what is wrong."""
    upload = DOC["paths"]["/v1/datasets"]["post"]
    assert set(upload["requestBody"]["content"]) == {"application/octet-stream"}
    headers = {"Authorization": f"Bearer {live_service.new_user('npz')}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = httpx.post(f"{live_service.url}/v1/datasets", content=b"no archive", headers=headers)
    assert r.status_code == 422
    documented = upload["responses"]["422"]["content"]
    assert r.headers["content-type"] in documented
    schema = {**documented[r.headers["content-type"]]["schema"], "components": DOC["components"]}
    assert jsonschema_rs.Draft202012Validator(schema).is_valid(r.json())
    assert r.json()["errors"] == [{"loc": "file", "msg": "upload: not an .npz (zip) archive"}]
