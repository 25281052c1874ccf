"""Fair share between users (aimc_store.fair_share): a real worker process takes jobs
by their rank in their owner's backlog, not first in, first out across users."""

from __future__ import annotations

import time
import uuid

import redis
from celery import Celery
from fastapi.testclient import TestClient

from aimc_store.fair_share import TRANSPORT_OPTIONS, priority, queue_lists
from aimc_store.store import JobStore
from service.app import create_app
from service.settings import Settings
from tests.conftest import forget_prefix, queue_of, store_url

ADMIN = "fair-admin"
# long enough that a1 still runs while the test queues the rest (a few hundred ms)
LONG = {"training": {"steps": 3000, "micro_batch_size": 8, "eval_every": 1000}}


def new_user(client: TestClient, name: str) -> dict[str, str]:
    r = client.post(
        "/v1/users",
        json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def test_priorities_land_in_the_lists_kombu_reads(redis_url: str) -> None:
    """The names queue_lists gives are where Celery's Redis transport puts a message of
    each priority (the reaper and the queue depth read them)."""
    queue = f"fair-{uuid.uuid4().hex[:6]}"
    app = Celery("fair-test", broker=redis_url)
    app.conf.broker_transport_options = TRANSPORT_OPTIONS
    r = redis.Redis.from_url(redis_url)
    try:
        for ahead in (0, 1, 4, 9, 30):
            app.send_task("nothing", args=[ahead], queue=queue, priority=priority(ahead))
        lengths = [r.llen(name) for name in queue_lists(queue)]
        assert lengths == [1, 1, 0, 0, 1, 0, 0, 0, 0, 2]
    finally:
        r.delete(*queue_lists(queue))


def test_a_users_one_job_starts_before_another_users_third(worker_store: JobStore) -> None:
    """User A queues 20 jobs, then user B queues one: B's job starts before A's third
    (first in, first out, it started after all twenty)."""
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_queued_jobs=30,
    )
    with TestClient(create_app(settings)) as client:
        a, b = new_user(client, "ada"), new_user(client, "bob")
        ours = [client.post("/v1/jobs", json=LONG, headers=a).json()["id"] for _ in range(20)]
        theirs = client.post("/v1/jobs", json=LONG, headers=b).json()["id"]
        try:
            deadline = time.monotonic() + 180
            while (job := worker_store.jobs.get(theirs)) and job.started is None:
                assert time.monotonic() < deadline, "B's job never started"
                time.sleep(0.2)
            third = worker_store.jobs.get(ours[2])
            assert third is not None and job is not None
            assert third.started is None or job.started < third.started, (job, third)
        finally:
            for job_id in [*ours, theirs]:
                client.post(f"/v1/jobs/{job_id}/cancel", headers=a if job_id in ours else b)


def test_the_queue_depth_counts_every_priority(redis_url: str) -> None:
    prefix = f"depth-{uuid.uuid4().hex[:6]}:"
    store = JobStore.from_url(redis_url, prefix)
    try:
        for name in queue_lists(queue_of(prefix))[::3]:
            store.r.lpush(name, b"message")
        assert store.stats.queue_depth(queue_of(prefix)) == 4
    finally:
        forget_prefix(store.r, prefix)
