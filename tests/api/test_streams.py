"""The events stream (SSE) over real HTTP: silence, ids, resuming, exactly once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from aimc_client import Client
from aimc_spec.spec import JobSpec
from aimc_spec.vocabulary import RUN_JOB_TASK
from aimc_store.keys import hash_key
from tests.conftest import LiveService, queue_of

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}


def _user(live: LiveService, name: str) -> tuple[str, str]:
    """(API key, user id) of a new user."""
    key = live.new_user(name)
    user = live.store.r.get(live.store.key("key", hash_key(key)))
    return key, user.decode()


def test_quiet_queued_job_keeps_its_listener_then_streams_every_event_once(
    live_service: LiveService,
) -> None:
    """A job held in the queue until its listener got a keep-alive comment (KEEPALIVE_S
    of silence, longer than redis-py's 5 s socket timeout): the listener stays, then gets
    every state and metric event exactly once, each with an id."""
    key, user = _user(live_service, "quiet")
    store = live_service.store
    job_id = store.jobs.create(user, JobSpec.model_validate(SHORT).normalised())
    lines: list[tuple[float, str]] = []

    def listen() -> None:
        with httpx.stream(
            "GET",
            f"{live_service.url}/v1/jobs/{job_id}/events",
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(60.0),
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append((time.monotonic(), line))

    listener = threading.Thread(target=listen)
    started = time.monotonic()
    listener.start()
    deadline = started + 120  # held in the queue, no task sent, until the first keep-alive
    while not any(line == ": keep-alive" for _, line in lines):
        assert listener.is_alive() and time.monotonic() < deadline, lines
        time.sleep(0.05)
    from worker.app import app

    released = time.monotonic()
    app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue_of(live_service.store.p))
    listener.join(timeout=120)
    assert not listener.is_alive()
    quiet = [line for t, line in lines if started <= t < released]
    assert quiet.count(": keep-alive") >= 1
    ids = [line[4:] for _, line in lines if line.startswith("id: ")]
    kinds = [line[7:] for _, line in lines if line.startswith("event: ")]
    assert len(ids) == len(kinds) == len(set(ids))
    assert kinds == ["state", "state", "metric", "metric", "metric", "state"]
    assert [e.state for e in store.jobs.events(job_id)] == ["queued", "running", "succeeded"]

    with Client(live_service.url, key) as client:
        full = list(client.stream(job_id))
        assert [e.kind for e in full] == kinds and [e.id for e in full] == ids
        assert [e.data["step"] for e in full if e.kind == "metric"] == [0, 10, 20]
        # a connection dropped after any event resumes with exactly the rest
        for i, event in enumerate(full):
            assert list(client.stream(job_id, last_event_id=event.id)) == full[i + 1 :]
        # a listener that walks away mid-stream and comes back misses nothing
        first = client.stream(job_id)
        seen = [next(first), next(first)]
        first.close()
        seen += list(client.stream(job_id, last_event_id=seen[-1].id))
        assert seen == full


def test_resume_is_exact_when_both_streams_hold_the_same_id(live_service: LiveService) -> None:
    """A metric point and a state change written in the same millisecond carry equal Redis
    ids in their two streams; resuming between them neither repeats nor skips one."""
    key, user = _user(live_service, "ties")
    store = live_service.store
    job_id = store.jobs.create(user, {"name": "ties"})
    metrics, events = store.key("job", job_id, "metrics"), store.key("job", job_id, "events")
    store.r.delete(events)
    store.r.xadd(events, {"state": "queued", "t": 1}, id="5-0")
    store.r.xadd(metrics, {"m": '{"step": 0}'}, id="7-0")
    store.r.xadd(events, {"state": "running", "t": 2}, id="7-0")
    store.r.xadd(metrics, {"m": '{"step": 1}'}, id="9-0")
    store.r.xadd(events, {"state": "succeeded", "t": 3}, id="9-0")
    store.r.hset(store.key("job", job_id), "state", "succeeded")
    with Client(live_service.url, key) as client:
        full = list(client.stream(job_id))
        assert [(e.kind, e.data.get("step", e.data.get("state"))) for e in full] == [
            ("state", "queued"),
            ("metric", 0),
            ("state", "running"),
            ("metric", 1),
            ("state", "succeeded"),
        ]
        for i, event in enumerate(full):
            assert list(client.stream(job_id, last_event_id=event.id)) == full[i + 1 :]
        bad = httpx.get(
            f"{live_service.url}/v1/jobs/{job_id}/events",
            headers={"Authorization": f"Bearer {key}", "Last-Event-ID": "../etc"},
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "Last-Event-ID"
