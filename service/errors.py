"""RFC 9457 problem+json errors: one exception type, and the handlers that turn every
error the app meets (ours, routing, validation, the store away) into a problem body."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from aimc_spec.spec import spec_problems
from service.schemas import Problem

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
STORE_RETRY_AFTER_S = 2
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ProblemError(Exception):
    """Raise to answer with a problem+json body (and optional headers)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(title=title, status=status, detail=detail, errors=errors)
        self.headers = headers


class BodyTooLarge(StarletteHTTPException):
    """A request body read past its limit (service.middleware). An HTTPException because
    FastAPI passes those on from reading a body, where any other error becomes a 400."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"request body over {limit} bytes; the limit {setting} is {limit}")


async def problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    body: dict[str, Any] = exc.problem.model_dump(exclude_none=True)
    return JSONResponse(
        body, status_code=exc.problem.status, media_type=PROBLEM, headers=exc.headers
    )


async def store_away(_: Request, exc: Exception) -> JSONResponse:
    """Redis unreachable or still loading (a restart): 503 with Retry-After, never a 500;
    clients retry (aimc_client does) and lose nothing."""
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the job store (Redis) is restarting or unreachable; retry shortly",
    }
    headers = {"Retry-After": str(STORE_RETRY_AFTER_S)}
    return JSONResponse(body, status_code=503, media_type=PROBLEM, headers=headers)


async def store_full(_: Request, exc: Exception) -> JSONResponse:
    """Redis at its maxmemory (it never evicts: `noeviction` keeps every job record, so
    it refuses writes instead): 507 with the cause, never a 500; reads still work."""
    body = {
        "type": "about:blank",
        "title": "Insufficient Storage",
        "status": 507,
        "detail": (
            "the job store (Redis) is full at its maxmemory and refuses writes; delete "
            "datasets or finished jobs, or ask the operator to raise AIMC_REDIS_MAXMEMORY"
        ),
    }
    return JSONResponse(body, status_code=507, media_type=PROBLEM)


async def store_error(request: Request, exc: Exception) -> JSONResponse:
    """An error reply from Redis: a write refused inside a script at maxmemory comes as a
    plain ResponseError whose text starts with OOM (a 507 as store_full); any other
    is a 500 naming nothing."""
    if "OOM command not allowed" in str(exc):
        return await store_full(request, exc)
    return await internal_error(request, exc)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Routing errors as problem+json; a 405 lists every method the path supports
    (Starlette's lists only those of the first route that matched the path)."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    allowed = allowed_methods(request) if exc.status_code == 405 else []
    if allowed:  # else the header the raiser set, if any (a mounted app's)
        headers["Allow"] = ", ".join(allowed)
    body = {
        "type": "about:blank",
        "title": "Payload Too Large" if isinstance(exc, BodyTooLarge) else str(exc.detail),
        "status": exc.status_code,
        "detail": f"{request.method} {request.url.path}: {exc.detail}",
    }
    return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers on the request's path, found by asking the app's
    router to match the path with each method: included routers are matched as the
    router itself matches them (newer FastAPI no longer lists their routes in
    app.routes, which left the header empty). A mount matches every method (its app
    decides), so mounted apps name theirs in the 405 they raise (ui._Static)."""
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    scope = request.scope
    # the app's own root path: under a mount (/ui/static) root_path has grown by the mount
    root = scope.get("app_root_path", scope.get("root_path", ""))
    path = {"type": "http", "path": scope["path"], "root_path": root}
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**path, "method": method})[0] == Match.FULL for route in routes)
    ]


async def invalid(_: Request, exc: Exception) -> JSONResponse:
    """422 with one {loc, msg} per problem; a job spec's paths start at its root."""
    assert isinstance(exc, RequestValidationError)
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


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: 500 problem+json that names no internals (no exception type,
    message or traceback reaches the caller; the server's log has them, as Starlette
    re-raises after answering)."""
    body = {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": f"{request.method} {request.url.path} failed on the server; it is logged",
    }
    return JSONResponse(body, status_code=500, media_type=PROBLEM)


def add_handlers(app: FastAPI) -> None:
    """Every error answers problem+json: ours, routing (404/405), validation (422), the
    store or broker unreachable (503) or full (507), and anything else (500)."""
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(ProblemError, problem_handler)
    for error in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error, store_away)
    app.add_exception_handler(RedisOutOfMemoryError, store_full)
    app.add_exception_handler(RedisResponseError, store_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what every error answer is: problem+json with the
    Problem schema. FastAPI files a `responses` entry's model under application/json,
    which no error is sent as; the problem+json entry had no schema, so a client or a
    checker (schemathesis) could not validate an error's body against it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI keeps it as app.openapi_schema: edited once
        for operations in document["paths"].values():
            for operation in operations.values():
                for answer in operation.get("responses", {}).values():
                    if PROBLEM in answer.get("content", {}):
                        answer["content"] = {PROBLEM: {"schema": PROBLEM_SCHEMA}}
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can give; every route that reads the
    store can answer 503 (with Retry-After) while Redis restarts, and every route with a
    parameter a 422 (FastAPI documents one itself, as application/json, where the
    answer is problem+json; document_problems files them all under problem+json)."""
    return {code: {"model": Problem, "content": {PROBLEM: {}}} for code in (*codes, 422, 503)}
