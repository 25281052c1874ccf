"""/metrics (service/prometheus.py): the exposition prometheus_client writes, parsed back
with its own parser, after jobs change state; the store's counts are read at scrape time."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from service import prometheus
from service.app import create_app
from service.settings import Settings
from tests.conftest import forget_prefix


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    """The app on a key prefix of its own (its counts start at zero); no worker needed."""
    prefix = f"test-prom-{uuid.uuid4().hex[:8]}:"
    with TestClient(create_app(Settings(redis_url=redis_url, key_prefix=prefix))) as c:
        yield c
    forget_prefix(redis.Redis.from_url(redis_url), prefix)


def parse(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Metric, sample: str) -> dict[tuple[str, ...], float]:
    """The values of one kind of sample (`_total`, `_bucket`, ...) by their label values,
    in label-name order."""
    return {
        tuple(v for _, v in sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == sample
    }


def test_families_and_values_after_jobs_change_state(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    store.jobs.create("gina", {"name": "stays queued"})
    ran = store.jobs.create("gina", {"name": "ran 7 s"})
    store.jobs.set_state(ran, "running", started=time.time() - 7)
    store.jobs.set_state(ran, "succeeded")
    store.jobs.set_state(store.jobs.create("gina", {"name": "never ran"}), "cancelled")
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no/such/route")

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    families = parse(r.text)
    assert {name: f.type for name, f in families.items()} == {
        "aimc_http_requests": "counter",
        "aimc_job_transitions": "counter",
        "aimc_job_duration_seconds": "histogram",
        "aimc_queue_depth": "gauge",
    }
    # labels (method, route, status); the scrape itself is counted once it has answered
    assert values(families["aimc_http_requests"], "aimc_http_requests_total") == {
        ("GET", "/healthz", "200"): 2,
        ("GET", "unmatched", "404"): 1,
    }
    assert values(families["aimc_job_transitions"], "aimc_job_transitions_total") == {
        ("queued",): 3,
        ("running",): 1,
        ("succeeded",): 1,
        ("cancelled",): 1,
    }
    # only the job that ran has a run time: 7 s lies above the 5 s bucket, within 15 s
    durations = families["aimc_job_duration_seconds"]
    assert values(durations, "aimc_job_duration_seconds_bucket") == {
        ("1", "succeeded"): 0,
        ("5", "succeeded"): 0,
        **{(bound, "succeeded"): 1 for bound in ("15", "60", "300", "900", "3600")},
        **{(bound, "succeeded"): 1 for bound in ("14400", "86400", "+Inf")},
    }
    assert values(durations, "aimc_job_duration_seconds_count") == {("succeeded",): 1}
    [seconds] = values(durations, "aimc_job_duration_seconds_sum").values()
    assert 7 <= seconds < 8
    [depth] = families["aimc_queue_depth"].samples
    assert depth.labels == {} and depth.value >= 0  # exact values: the next test

    # read at scrape time: a later change, and the first scrape, show in the next one
    failed = store.jobs.create("gina", {"name": "fails"})
    store.jobs.set_state(failed, "running")
    store.jobs.set_state(failed, "failed")
    again = parse(client.get("/metrics").text)
    transitions = values(again["aimc_job_transitions"], "aimc_job_transitions_total")
    assert transitions[("running",)] == 2 and transitions[("failed",)] == 1
    requests = values(again["aimc_http_requests"], "aimc_http_requests_total")
    assert requests[("GET", "/metrics", "200")] == 1
    counts = values(again["aimc_job_duration_seconds"], "aimc_job_duration_seconds_count")
    assert counts == {("succeeded",): 1, ("failed",): 1}


def test_queue_depth_is_the_queues_length_at_scrape_time(
    client: TestClient, redis_url: str
) -> None:
    """The gauge counts the messages waiting in the Celery queue (a Redis list); a queue of
    the test's own, so a worker of another test cannot drain it meanwhile."""
    queue = f"test-queue-{uuid.uuid4().hex[:8]}"
    registry = prometheus.registry(client.app.state, Counter(), queue)  # type: ignore[attr-defined]
    r = redis.Redis.from_url(redis_url)
    try:
        depths = []
        for waiting in (0, 3, 1):
            r.delete(queue)
            if waiting:
                r.rpush(queue, *[f"message {i}" for i in range(waiting)])
            families = parse(generate_latest(registry).decode())
            [depth] = families["aimc_queue_depth"].samples
            depths.append(depth.value)
        assert depths == [0, 3, 1]
    finally:
        r.delete(queue)
