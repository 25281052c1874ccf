"""The FastAPI application: create_app() wires settings, the store, the queue and routes."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from celery import Celery
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from aimc_store.fair_share import TRANSPORT_OPTIONS
from aimc_store.reads import AsyncReads
from aimc_store.store import JobStore, fail_fast
from service import prometheus, ui
from service.errors import add_handlers, document_problems
from service.events import stream_client
from service.middleware import ApiHeaders, ConfineDatasetPaths, HeadAsGet, LimitAndCount
from service.reaper import Reaper
from service.routes import configs, datasets, health, jobs, sweeps, users
from service.settings import Settings, get_settings
from service.upload_checks import UploadChecks


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the store, the SSE and async Redis clients and the queue; run the reaper of
    lost jobs; close them all at shutdown."""
    s: Settings = app.state.settings
    app.state.store = JobStore.from_settings(s)
    app.state.aredis = aioredis.Redis.from_url(s.redis_url, retry=fail_fast())
    app.state.stream_redis = stream_client(s.redis_url)  # SSE's blocking reads
    app.state.reads = AsyncReads(app.state.aredis, app.state.store)
    app.state.celery = Celery("aimc-api", broker=s.redis_url, backend=s.redis_url)
    # one list per priority, as the workers read them: fair share between users
    app.state.celery.conf.broker_transport_options = TRANSPORT_OPTIONS
    # dataset uploads are checked in processes of their own, a few at once
    app.state.upload_checks = UploadChecks(s.upload_checks_at_once)
    # the objects of start-up (modules, schemas) never die: keep them out of the
    # collector's full passes, which otherwise stall a request now and then
    gc.collect()
    gc.freeze()
    reaper = asyncio.create_task(Reaper(app.state.store, app.state.celery, s.queue).run_forever())
    yield
    reaper.cancel()
    app.state.store.r.close()
    await app.state.aredis.aclose()
    await app.state.stream_redis.aclose()
    app.state.upload_checks.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; nothing connects until the app starts (lifespan)."""
    s = settings or get_settings()
    # FastAPIOffline: FastAPI with /docs and /redoc served from the assets its package
    # ships (Swagger UI, ReDoc) instead of a CDN, so a lab network without internet
    # still shows the API's documentation
    app = FastAPIOffline(
        title="aimc",
        version="0.1.0",
        lifespan=lifespan,
        description="Simulated training on analog in-memory hardware, as a service.",
    )
    app.state.settings = s
    add_handlers(app)
    requests_total: prometheus.RequestCounts = Counter()  # this process's, for /metrics
    app.state.registry = prometheus.registry(app.state, requests_total, s.queue)
    app.add_middleware(
        LimitAndCount,
        max_body_bytes=s.max_body_bytes,
        large_bodies={"/v1/datasets": (s.max_dataset_bytes, "max_dataset_bytes")},
        requests_total=requests_total,
    )
    app.add_middleware(ConfineDatasetPaths, roots=s.dataset_roots())
    app.add_middleware(ApiHeaders)  # outside LimitAndCount: its 413s get them too
    app.add_middleware(HeadAsGet)
    for module in (prometheus, health, jobs, sweeps, datasets, users, configs):
        app.include_router(module.router)
    ui.mount(app)  # the dashboard at /ui
    document_problems(app)
    return app
