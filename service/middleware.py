"""Pure ASGI middleware: the body-size limit and the request counter of /metrics.

Written against ASGI directly rather than with Starlette's BaseHTTPMiddleware, which
wraps every request in extra tasks and streams and cost the status route ~30% of its
throughput.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimc_spec.spec import DATASET_ROOTS
from service.errors import PROBLEM


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
    larger limit `large_bodies` gives its path: dataset uploads); counts every answered
    request by (method, route template, status) into `requests_total`."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        large_bodies: dict[str, int],
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
        limit = self.large_bodies.get(scope["path"], self.max_body_bytes)
        if length.isdigit() and int(length) > limit:
            await self._too_large(scope, send, int(length), limit)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests_total[(scope["method"], route, status)] += 1

    async def _too_large(self, scope: Scope, send: Send, length: int, limit: int) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Payload Too Large",
                "status": 413,
                "detail": f"request body of {length} bytes; the limit is {limit}",
            }
        ).encode()
        self.requests_total[(scope["method"], "unmatched", 413)] += 1
        headers = [
            (b"content-type", PROBLEM.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
