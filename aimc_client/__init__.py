"""Python client of the aimc service (httpx): submit, watch, fetch and compare jobs.

    from aimc_client import Client
    client = Client()                       # AIMC_URL, AIMC_API_KEY from the environment
    job = client.submit("examples/paper_async_analog.yaml")
    job = client.wait(job["id"], on_progress=lambda j: print(j["progress"]))
    client.download(job["id"], "runs/x")

In a notebook, a Job handle shows an HTML progress bar and gives metrics as a DataFrame
(with pandas installed):

    job = client.job(client.submit("examples/digits_digital.yaml")["id"])
    job.wait()
    job.metrics(frame=True).plot(x="samples", y="test_loss")

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
from aimc_client.job import Job

__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "ConflictError",
    "Event",
    "InvalidError",
    "Job",
    "NotFoundError",
    "RateLimitError",
    "ServiceUnavailable",
    "Unreachable",
]
