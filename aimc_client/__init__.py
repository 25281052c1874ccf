"""Python client of the aimc service (httpx): submit, watch, fetch and compare jobs.

    from aimc_client import Client
    client = Client()                       # AIMC_URL, AIMC_API_KEY from the environment
    job = client.submit("examples/paper_async_analog.yaml")
    job = client.wait(job["id"], on_progress=lambda j: print(j["progress"]))
    client.download(job["id"], "runs/x")

Errors the service answers with come back as ApiError subclasses carrying the
problem+json fields; 429 and 503 are retried with backoff, honouring Retry-After.
"""

from aimc_client.client import Client, Event
from aimc_client.errors import (
    ApiError,
    AuthError,
    ConflictError,
    InvalidError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailable,
    Unreachable,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "ConflictError",
    "Event",
    "InvalidError",
    "NotFoundError",
    "RateLimitError",
    "ServiceUnavailable",
    "Unreachable",
]
