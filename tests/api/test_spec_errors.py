"""The API's 422s for a misspelt field offer the closest known one, as the CLI does: both
come from aimc_spec.spec.spec_problems, the one place specs are parsed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import forget_prefix

ADMIN = "suggest-admin"


@pytest.fixture(scope="module")
def auth(redis_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app on a key prefix of its own (on the session's own Redis) and a user's auth
    header; nothing runs a job."""
    prefix = f"test-suggest-{uuid.uuid4().hex[:8]}:"
    settings = Settings(redis_url=redis_url, key_prefix=prefix, admin_key=ADMIN)
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/users", json={"name": "speller"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert r.status_code == 201, r.text
        yield client, {"Authorization": f"Bearer {r.json()['api_key']}"}
    forget_prefix(redis.Redis.from_url(redis_url), prefix)


def test_a_job_with_a_misspelt_field_is_told_the_closest_one(
    auth: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = auth
    r = client.post("/v1/jobs", json={"optimiser": {"lr": 0.1}}, headers=headers)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "loc": "optimiser",
            "msg": "unknown field (not part of the job spec); did you mean 'optimizer'?",
        }
    ]


def test_a_sweep_base_with_a_misspelt_field_is_told_the_closest_one(
    auth: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = auth
    body = {"name": "s", "spec": {"training": {"epochz": 1}}, "grid": {"seed": [1, 2]}}
    r = client.post("/v1/sweeps", json=body, headers=headers)
    assert r.status_code == 422
    assert "did you mean 'epochs'?" in r.json()["detail"]


def test_a_job_with_a_field_of_another_device_family_is_told_which(
    auth: tuple[TestClient, dict[str, str]],
) -> None:
    """The family's tag pydantic puts in the location (analog.device.softbounds.gamma) is
    left out, and the message names the families with a gamma and softbounds' fields."""
    client, headers = auth
    body = {"analog": {"device": {"model": "softbounds", "gamma": 0.3}}}
    r = client.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 422
    [error] = r.json()["errors"]
    assert error["loc"] == "analog.device.gamma"
    assert error["msg"].startswith(
        "not a field of model 'softbounds' (only of model 'linear', 'power' or 'exp'); "
        "'softbounds' takes: model, preset, w_min"
    )
