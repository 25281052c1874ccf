"""The FastAPI application: create_app() wires settings, the store, the queue and routes."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aimc_spec.spec import spec_problems
from aimc_spec.vocabulary import QUEUE
from aimc_store.reads import AsyncReads
from aimc_store.stats import DURATION_BUCKETS_S
from aimc_store.store import JobStore, fail_fast
from service import ui
from service.errors import PROBLEM, ProblemError, problem_handler
from service.events import stream_client
from service.middleware import ConfineDatasetPaths, LimitAndCount
from service.reaper import Reaper
from service.routes import datasets, jobs, sweeps, users
from service.settings import Settings, get_settings

STORE_RETRY_AFTER_S = 2


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; nothing connects until the app starts (lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        app.state.settings = s
        app.state.store = JobStore.from_settings(s)
        app.state.aredis = aioredis.Redis.from_url(s.redis_url, retry=fail_fast())
        app.state.stream_redis = stream_client(s.redis_url)  # SSE's blocking reads
        app.state.reads = AsyncReads(app.state.aredis, app.state.store)
        app.state.celery = Celery("aimc-api", broker=s.redis_url, backend=s.redis_url)
        # the objects of start-up (modules, schemas) never die: keep them out of the
        # collector's full passes, which otherwise stall a request now and then
        gc.collect()
        gc.freeze()
        reaper = asyncio.create_task(Reaper(app.state.store, app.state.celery, QUEUE).run_forever())
        yield
        reaper.cancel()
        app.state.store.r.close()
        await app.state.aredis.aclose()
        await app.state.stream_redis.aclose()

    app = FastAPI(
        title="aimc",
        version="0.1.0",
        lifespan=lifespan,
        description="Simulated training on analog in-memory hardware, as a service.",
    )
    app.add_exception_handler(ProblemError, problem_handler)
    requests_total: Counter[tuple[str, str, int]] = Counter()  # this process's, for /metrics
    limits = settings or get_settings()
    app.add_middleware(
        LimitAndCount,
        max_body_bytes=limits.max_body_bytes,
        large_bodies={"/v1/datasets": limits.max_dataset_bytes},
        requests_total=requests_total,
    )
    app.add_middleware(ConfineDatasetPaths, roots=limits.dataset_roots())

    async def store_away(_: Request, exc: Exception) -> JSONResponse:
        """Redis unreachable or still loading (a restart): 503 with Retry-After, never a
        500; clients retry (aimc_client does) and lose nothing."""
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the job store (Redis) is restarting or unreachable; retry shortly",
        }
        headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        return JSONResponse(body, status_code=503, media_type=PROBLEM, headers=headers)

    for error in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error, store_away)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing errors as problem+json; a 405 lists every method the path supports
        (Starlette's lists only those of the first route that matched the path)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = sorted(
                {
                    method
                    for route in app.routes
                    if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                    for method in route.methods or ()
                }
            )
            headers["Allow"] = ", ".join(allowed)
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}",
        }
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with one {loc, msg} per problem; a job spec's paths start at its root."""
        located = [
            {**e, "loc": tuple(e["loc"])[1:] if tuple(e["loc"])[:1] == ("body",) else e["loc"]}
            for e in exc.errors()
        ]
        errors = [{"loc": loc, "msg": msg} for loc, msg in spec_problems(located)]
        body = {
            "type": "about:blank",
            "title": "Invalid request",
            "status": 422,
            "detail": "; ".join(f"{e['loc']}: {e['msg']}" for e in errors),
            "errors": errors,
        }
        return JSONResponse(body, status_code=422, media_type=PROBLEM)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics(request: Request) -> str:
        """Prometheus text format: requests, job state transitions, job durations, queue
        depth."""
        store: JobStore = request.app.state.store
        lines = [
            "# HELP aimc_http_requests_total HTTP requests by method, route and status.",
            "# TYPE aimc_http_requests_total counter",
        ]
        for (method, path, status), count in sorted(requests_total.items()):
            lines.append(
                f'aimc_http_requests_total{{method="{method}",route="{path}",status="{status}"}}'
                f" {count}"
            )
        lines += [
            "# HELP aimc_job_transitions_total Times jobs entered each state.",
            "# TYPE aimc_job_transitions_total counter",
        ]
        for state, count in sorted(store.transitions().items()):
            lines.append(f'aimc_job_transitions_total{{state="{state}"}} {count}')
        lines += [
            "# HELP aimc_job_duration_seconds Run time of finished jobs (start to end state).",
            "# TYPE aimc_job_duration_seconds histogram",
        ]
        for state, buckets in sorted(store.durations().items()):
            for bound in [f"{b:g}" for b in DURATION_BUCKETS_S] + ["+Inf"]:
                count = int(buckets.get(bound, 0))
                lines.append(
                    f'aimc_job_duration_seconds_bucket{{state="{state}",le="{bound}"}} {count}'
                )
            lines.append(
                f'aimc_job_duration_seconds_sum{{state="{state}"}} {buckets.get("sum", 0.0)}'
            )
            lines.append(
                f'aimc_job_duration_seconds_count{{state="{state}"}} {int(buckets.get("+Inf", 0))}'
            )
        lines += [
            "# HELP aimc_queue_depth Jobs waiting for a worker.",
            "# TYPE aimc_queue_depth gauge",
            f"aimc_queue_depth {store.queue_depth(QUEUE)}",
        ]
        return "\n".join(lines) + "\n"

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz(request: Request) -> JSONResponse:
        """Readiness: Redis answers and at least one worker answers a ping."""
        checks = {"redis": False, "worker": False}
        try:
            checks["redis"] = bool(request.app.state.store.r.ping())
            replies = request.app.state.celery.control.ping(timeout=1.0)
            checks["worker"] = bool(replies)
        except Exception:  # an unreachable broker is exactly what this reports
            pass
        return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)

    app.include_router(jobs.router)
    app.include_router(sweeps.router)
    app.include_router(datasets.router)
    app.include_router(users.router)
    ui.mount(app)  # the dashboard at /ui
    return app
