"""Typed errors of the client: one class per kind of answer a caller handles differently,
each carrying the RFC 9457 problem fields the service sent."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The service answered with an error (or could not be reached: status 0, which the
    message leaves out: no HTTP status was ever received)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        type_: str = "about:blank",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []  # for 422: [{"loc": "training.epochs", "msg": ...}]
        self.type = type_
        head = f"{status} {title}" if status else title
        super().__init__(f"{head}: {detail}" if detail else head)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(field path, message) per fault, as aimc_spec.spec.SpecError gives them."""
        return [(str(e.get("loc", "")), str(e.get("msg", ""))) for e in self.errors] or [
            ("", self.detail or self.title)
        ]


class AuthError(ApiError):
    """401: no API key or an unknown one."""


class NotFoundError(ApiError):
    """404: no such job, sweep or dataset among the caller's."""


class ConflictError(ApiError):
    """409: e.g. an Idempotency-Key reused with another body, or no result yet."""


class InvalidError(ApiError):
    """413/422: the request itself is wrong (spec, grid, upload); see `errors`."""


class RateLimitError(ApiError):
    """429 after the client's retries ran out; `retry_after` is the last wait asked for."""

    retry_after: float | None = None


class ServiceUnavailable(ApiError):
    """503, or the service could not be reached, after the client's retries ran out."""


class Unreachable(ServiceUnavailable):
    """No answer at all: nothing listens at `url`, or the connection broke, after the
    client's retries ran out. `reason` is the transport's own words."""

    def __init__(self, url: str, reason: str, title: str = "Service unreachable") -> None:
        self.url = url
        self.reason = reason
        super().__init__(0, title, f"{url}: {reason}")


BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidError,
    422: InvalidError,
    429: RateLimitError,
    503: ServiceUnavailable,
}
