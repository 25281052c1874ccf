"""Pure ASGI middleware: the body-size limit and the request counter of /metrics.

Written against ASGI directly rather than with Starlette's BaseHTTPMiddleware, which
wraps every request in extra tasks and streams and cost the status route ~30% of its
throughput.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimc_spec.spec import DATASET_ROOTS
from service.errors import PROBLEM, BodyTooLarge


class ConfineDatasetPaths:
    """Every request validates job specs under the operator's dataset directories: a
    spec's server-side path is a file read on the workers' machines for a remote user
    (see aimc_spec.spec.DATASET_ROOTS). Set per request because a context variable set
    at start-up does not reach the tasks that serve requests."""

    def __init__(self, app: ASGIApp, roots: tuple[Path, ...]) -> None:
        self.app = app
        self.roots = roots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = DATASET_ROOTS.set(self.roots)
        try:
            await self.app(scope, receive, send)
        finally:
            DATASET_ROOTS.reset(token)


class LimitAndCount:
    """413 before reading a body whose Content-Length is over `max_body_bytes` (or the
    larger limit `large_bodies` gives its path: dataset uploads), and as soon as a body
    without one (chunked) passes it; counts every answered request by (method, route
    template, status) into `requests_total`."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        large_bodies: dict[str, tuple[int, str]],
        requests_total: Counter[tuple[str, str, int]],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies
        self.requests_total = requests_total

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        limit, setting = self.large_bodies.get(
            scope["path"], (self.max_body_bytes, "max_body_bytes")
        )
        if length.isdigit() and int(length) > limit:
            await self._too_large(scope, send, int(length), limit, setting)
            return
        status = 500
        received = 0

        async def limited_receive() -> Message:
            """The body as it arrives, refused (413) once it passes the limit: a chunked
            body declares no length, and was read whole (200 MB) before its 422."""
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests_total[(scope["method"], route, status)] += 1

    async def _too_large(
        self, scope: Scope, send: Send, length: int, limit: int, setting: str
    ) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Payload Too Large",
                "status": 413,
                "detail": f"request body of {length} bytes; the limit {setting} is {limit}",
            }
        ).encode()
        self.requests_total[(scope["method"], "unmatched", 413)] += 1
        headers = [
            (b"content-type", PROBLEM.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ApiHeaders:
    """`X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on every /v1
    answer: a browser must not guess a JSON error or an artifact to be HTML, and no
    cache (a proxy's, a browser's disk) may keep one user's jobs, keys or data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in (b"cache-control", b"x-content-type-options")
                ]
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HeadAnswered(Exception):
    """Stops a streaming answer to a HEAD request once its headers are sent."""


class HeadAsGet:
    """HEAD wherever GET works: FastAPI's routes answer only the methods they name (HEAD
    /healthz was a 405), so a HEAD request is served as its GET and the body dropped;
    the headers (Content-Length, Content-Type) are the GET's, as RFC 9110 asks. A
    streaming answer (an event stream) is stopped once its headers are out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
                return
            if not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            if message.get("more_body", False):
                raise _HeadAnswered

        with contextlib.suppress(_HeadAnswered):
            await self.app({**scope, "method": "GET"}, receive, headers_only)
