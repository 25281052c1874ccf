"""/metrics: the Prometheus exposition, written by prometheus_client from counts read at
scrape time.

Job state transitions, run times and the queue are shared by every API process and
worker, so they live in Redis (the store keeps them) and a collector reads them when
Prometheus scrapes, instead of process-local metrics that each API replica would report
differently. Requests are counted per process by the middleware (service.middleware), as
Prometheus expects of a counter scraped from each replica.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.datastructures import State

from aimc_store.stats import DURATION_BUCKETS_S
from aimc_store.store import JobStore

router = APIRouter(tags=["health"])
RequestCounts = Counter[tuple[str, str, int]]  # (method, route template, status) -> count
BOUNDS = [f"{b:g}" for b in DURATION_BUCKETS_S] + ["+Inf"]  # the store's bucket names


class ServiceCollector:
    """Yields the service's metric families on each scrape: requests, job state
    transitions, job durations (a histogram per final state) and the queue depth."""

    def __init__(self, state: State, requests_total: RequestCounts, queue: str) -> None:
        self.state = state  # the app's: its store exists once the lifespan has started
        self.requests_total = requests_total
        self.queue = queue  # the Celery queue whose waiting messages are the depth

    def collect(self) -> Iterator[Metric]:
        store: JobStore = self.state.store
        requests = CounterMetricFamily(
            "aimc_http_requests",
            "HTTP requests by method, route and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(self.requests_total.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests

        transitions = CounterMetricFamily(
            "aimc_job_transitions", "Times jobs entered each state.", labels=["state"]
        )
        for state, count in sorted(store.stats.transitions().items()):
            transitions.add_metric([state], count)
        yield transitions

        durations = HistogramMetricFamily(
            "aimc_job_duration_seconds",
            "Run time of finished jobs (start to end state).",
            labels=["state"],
        )
        for state, buckets in sorted(store.stats.durations().items()):
            durations.add_metric(
                [state],
                [(bound, buckets.get(bound, 0)) for bound in BOUNDS],
                sum_value=buckets.get("sum", 0.0),
            )
        yield durations

        yield GaugeMetricFamily(
            "aimc_queue_depth",
            "Jobs waiting for a worker.",
            value=store.stats.queue_depth(self.queue),
        )


def registry(state: State, requests_total: RequestCounts, queue: str) -> CollectorRegistry:
    """A registry of this app's own (not prometheus_client's global one, which every app
    in a process, as in the tests, would share), holding the service's collector."""
    own = CollectorRegistry()
    own.register(ServiceCollector(state, requests_total, queue))
    return own


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: requests, job state transitions, job durations, queue
    depth."""
    exposition = generate_latest(request.app.state.registry)
    return PlainTextResponse(exposition, media_type=CONTENT_TYPE_PLAIN_0_0_4)
