"""Each job's process runs under an operating-system memory limit: past it the job
fails naming the limit and the worker lives (worker/memory_limit.py); a job whose
estimate already passes that limit fails before it starts (worker/fits.py)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimc_store.store import JobStore
from service.app import create_app
from service.serve import worker_command
from service.settings import Settings
from tests.conftest import ROOT, forget_prefix, queue_of, stop_process
from worker.fresh_process import run_in_fresh_process
from worker.memory_limit import describe_failure

ADMIN = "memory-admin"
SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}
# ~70 MB of weights, with device state and a checkpoint near 1 GB: over 200 MiB
BIG = {"model": {"hidden": [4096, 4096]}, "training": {"steps": 3, "eval_every": 1}}


def test_an_allocation_past_the_limit_fails_in_the_child_naming_it(tmp_path: Path) -> None:
    said = tmp_path / "error"

    def greedy() -> int:
        try:
            np.ones(512 * 2**20 // 8)  # 512 MiB
        except MemoryError as exc:
            said.write_text(describe_failure(exc))
            return 3
        return 0

    assert run_in_fresh_process(greedy, memory_limit_mib=64) == 3
    assert "limit of 64 MiB" in said.read_text() and "AIMC_JOB_MAX_MEMORY_MIB" in said.read_text()
    # the same work with room enough, and this (the worker's) process never limited
    assert run_in_fresh_process(greedy, memory_limit_mib=2048) == 0
    np.ones(512 * 2**20 // 8)


@pytest.fixture
def small_worker(redis_url: str, tmp_path: Path) -> Iterator[tuple[JobStore, str]]:
    """A worker of its own (prefix, queue) whose jobs may map 200 MiB beyond it."""
    prefix = f"mem-{uuid.uuid4().hex[:6]}:"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "AIMC_KEY_PREFIX": prefix,
        "AIMC_JOB_MAX_MEMORY_MIB": "200",
        "AIMC_ARTIFACT_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [*worker_command(), "--without-gossip", "--without-mingle", "-Q", queue_of(prefix)],
        cwd=ROOT,
        env=env,
    )
    store = JobStore.from_url(redis_url, prefix, artifact_dir=tmp_path)
    try:
        yield store, redis_url
    finally:
        stop_process(proc)
        forget_prefix(store.r, prefix)


def _ended(client: TestClient, job_id: str, auth: dict[str, str]) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_a_job_past_the_workers_memory_limit_fails_clearly_and_the_worker_lives(
    small_worker: tuple[JobStore, str],
) -> None:
    store, url = small_worker
    settings = Settings(
        redis_url=url, key_prefix=store.p, admin_key=ADMIN, artifact_dir=store.artifact_dir
    )
    with TestClient(create_app(settings)) as client:
        made = client.post(
            "/v1/users", json={"name": "mel"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
        big = client.post("/v1/jobs", json=BIG, headers=auth)
        assert big.status_code == 202, big.text  # the API's own estimate lets it in
        failed = _ended(client, big.json()["id"], auth)
        assert failed["state"] == "failed", failed
        assert "limit of 200 MiB per job" in failed["error"], failed["error"]
        assert "estimated peak memory" in failed["error"]  # refused before it ran
        assert failed.get("progress", 0) == 0
        small = client.post("/v1/jobs", json=SHORT, headers=auth).json()["id"]
        assert _ended(client, small, auth)["state"] == "succeeded"
