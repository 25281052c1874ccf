"""A schemathesis run against the OpenAPI schema: no 5xx and no undocumented status.

Authenticated as a real user on the session's own Redis; every operation gets a few
dozen generated requests (hypothesis), checked by schemathesis' default checks
(server errors, status codes and content types the schema declares, response
schemas, Allow headers), all but positive-data acceptance (see the test).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.settings import Settings
from tests.conftest import forget_prefix

ADMIN = "fuzz-admin"
PREFIX = f"fuzz-{uuid.uuid4().hex[:8]}:"
app = create_app(
    Settings(
        key_prefix=PREFIX,
        admin_key=ADMIN,
        requests_per_minute=100_000,
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# one test per operation, each with an ID of its own (schemathesis' own parametrize gives
# all its tests one node ID, and pytest-xdist then runs only one of them)
OPERATIONS = {result.ok().label: result.ok() for result in schema.get_all_operations()}
AUTH: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def running_app(worker_store: object, redis_url: str) -> Iterator[None]:
    """The app's lifespan running on the tests' Redis, and a worker up (so /readyz
    answers 200)."""
    app.state.settings = app.state.settings.model_copy(update={"redis_url": redis_url})
    with TestClient(app) as client:  # runs the lifespan: the store and queue exist
        r = client.post(
            "/v1/users", json={"name": "fuzz"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        AUTH["Authorization"] = f"Bearer {r.json()['api_key']}"
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)  # the worker is still starting
        yield
    # the jobs it submitted wait in its own queue, which no worker takes from
    forget_prefix(redis.Redis.from_url(redis_url), PREFIX)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_api_conforms_to_its_schema(operation: str, data: st.DataObject) -> None:
    case: schemathesis.Case = data.draw(OPERATIONS[operation].as_strategy(), label="case")
    headers = {} if case.path == "/v1/users" else dict(AUTH)
    # positive_data_acceptance is left out: cross-field rules of the job spec (exactly one
    # of epochs/steps, preset conflicts, ...) are not expressible in JSON Schema, so a
    # schema-valid spec may rightly get the documented 422
    excluded = [schemathesis.checks.positive_data_acceptance]
    if case.path == "/readyz":
        # 503 is readiness saying "a worker did not answer within 1 s" (documented); a
        # worker busy forking its next child can miss one ping. tests/api/test_api.py checks
        # the 200 with a worker up.
        excluded.append(schemathesis.checks.not_a_server_error)
    case.call_and_validate(headers=headers, excluded_checks=excluded)
