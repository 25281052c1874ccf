"""RFC 9457 problem+json errors: one exception type, one handler."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


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


async def problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    body: dict[str, Any] = exc.problem.model_dump(exclude_none=True)
    return JSONResponse(
        body, status_code=exc.problem.status, media_type=PROBLEM, headers=exc.headers
    )


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can give; every route that reads the
    store can answer 503 (with Retry-After) while Redis restarts."""
    return {code: {"model": Problem, "content": {PROBLEM: {}}} for code in (*codes, 503)}
