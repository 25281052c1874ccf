"""The Client: every route of the service as a method, with retries and typed errors."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from aimc_client.errors import BY_STATUS, ApiError, RateLimitError, Unreachable
from aimc_client.job import Job
from aimc_spec.spec import JobSpec, load_spec_file, read_spec_file
from aimc_spec.vocabulary import TERMINAL

DEFAULT_URL = "http://127.0.0.1:8000"  # where `aimc serve` listens by default
MAX_WAIT_S = 60.0  # longest single pause between retries, whatever Retry-After asks

SpecLike = dict[str, Any] | JobSpec | str | Path


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: `state` ({"state", "t"}) or `metric` (a point)."""

    kind: str
    data: dict[str, Any]
    id: str | None = None  # resume after this event: stream(job, last_event_id=id)


def _error(response: httpx.Response) -> ApiError:
    """The typed error for an error response, from its problem+json body if it has one."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    cls = BY_STATUS.get(response.status_code, ApiError)
    error = cls(
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or ""),
        body.get("errors") if isinstance(body.get("errors"), list) else None,
        str(body.get("type") or "about:blank"),
    )
    if isinstance(error, RateLimitError):
        error.retry_after = _retry_after(response)
    return error


def _reason(exc: httpx.TransportError) -> str:
    """A transport error in words: its message, else its kind (httpx's read timeouts
    carry no message)."""
    return str(exc) or type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date or nothing: fall back to exponential backoff


class Client:
    """A session with one aimc service as one user.

    url and api_key default to $AIMC_URL (else http://127.0.0.1:8000) and $AIMC_API_KEY.
    429 and 503 answers, and connection failures, are retried `retries` times with
    exponential backoff from `backoff_s` (or the Retry-After the service sent).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("AIMC_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("AIMC_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = retries
        self.backoff_s = backoff_s
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # transport ---------------------------------------------------------------
    def _pause(self, attempt: int, asked: float | None) -> None:
        time.sleep(min(MAX_WAIT_S, asked if asked is not None else self.backoff_s * 2**attempt))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call with retries; a non-GET is re-sent after a transport error only if it
        never reached the service (connect errors), so nothing is done twice."""
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                retry = method == "GET" or isinstance(exc, httpx.ConnectError)
                if not retry or attempt == self.retries:
                    raise Unreachable(self.url, _reason(exc)) from exc
                self._pause(attempt, None)
                continue
            if response.status_code in (429, 503) and attempt < self.retries:
                self._pause(attempt, _retry_after(response))
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # jobs --------------------------------------------------------------------
    @staticmethod
    def spec_body(spec: SpecLike) -> dict[str, Any]:
        """A spec as the JSON body to send: a path is read and validated here first (raises
        aimc_spec.spec.SpecError), a JobSpec is normalised, a dict goes as it is."""
        if isinstance(spec, JobSpec):
            return spec.normalised()
        if isinstance(spec, str | Path):
            return load_spec_file(spec).normalised()
        return spec

    def submit(self, spec: SpecLike, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a job; the job as the service sees it (state `queued`). An Idempotency-Key
        is always sent (a fresh one unless given), so a retried submit queues one job."""
        key = idempotency_key or uuid.uuid4().hex
        return dict(
            self._json(
                "POST", "/v1/jobs", json=self.spec_body(spec), headers={"Idempotency-Key": key}
            )
        )

    def job(self, job_id: str) -> Job:
        """A handle on the job (Job: info, wait with a progress bar, metrics as a frame)."""
        return Job(self, job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        """State, progress (0..1), ETA, latest metric point, error."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(
        self, *, state: str | None = None, name: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every job of the caller, newest first, following the pages as they are read."""
        params: dict[str, Any] = {"limit": page_size}
        if state:
            params["state"] = state
        if name:
            params["name"] = name
        while True:
            page = self._json("GET", "/v1/jobs", params=params)
            yield from page["jobs"]
            if not page["next_cursor"]:
                return
            params["cursor"] = page["next_cursor"]

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job ends; the final job. `on_progress` gets the job at each poll."""
        return _poll(
            lambda: self.get(job_id),
            lambda job: job["state"] in TERMINAL,
            on_progress,
            poll_s,
            timeout_s,
            f"job {job_id}",
        )

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events live (SSE) until it ends, after `last_event_id` if given. A
        dropped connection (the API restarted, a proxy timed out) is reopened with the
        last event's id as Last-Event-ID, so every event arrives exactly once; `retries`
        failed reconnects in a row give up with ServiceUnavailable."""
        last = last_event_id
        failures = 0
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with connect_sse(
                    self.http,
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(60.0, connect=10.0),  # keep-alives come every 10 s
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code in (429, 503) and failures < self.retries:
                            failures += 1
                            self._pause(failures, _retry_after(response))
                            continue
                        raise _error(response)
                    for sse in source.iter_sse():
                        failures = 0
                        if not sse.data:
                            continue  # the opening `retry:` frame
                        last = sse.id or last
                        yield Event(sse.event, json.loads(sse.data), sse.id or None)
                return
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.retries:
                    raise Unreachable(self.url, _reason(exc), "Stream lost") from exc
                self._pause(failures - 1, None)

    def metrics(self, job_id: str, *, since: int = -1) -> list[dict[str, Any]]:
        """Metric points with step > since."""
        return list(self._json("GET", f"/v1/jobs/{job_id}/metrics", params={"since": since}))

    def metrics_csv(self, job_id: str, *, since: int = -1) -> str:
        response = self._request(
            "GET",
            f"/v1/jobs/{job_id}/metrics",
            params={"since": since},
            headers={"Accept": "text/csv"},
        )
        return response.text

    def result(self, job_id: str) -> dict[str, Any]:
        """result.json of a finished job (ConflictError before it ends)."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}/result"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def artifacts(self, job_id: str) -> list[str]:
        return list(self._json("GET", f"/v1/jobs/{job_id}/artifacts"))

    def download(
        self, job_id: str, out_dir: str | Path, names: list[str] | None = None
    ) -> list[Path]:
        """Save the job's artifacts (all, or `names`) into out_dir; their paths. Each is
        streamed to a .part file, renamed when complete (weights can be hundreds of MB)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in names if names is not None else self.artifacts(job_id):
            path = out / Path(name).name
            partial = path.with_name(path.name + ".part")
            with self.http.stream("GET", f"/v1/jobs/{job_id}/artifacts/{name}") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                with partial.open("wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
            partial.replace(path)
            paths.append(path)
        return paths

    # sweeps ------------------------------------------------------------------
    def sweep(
        self,
        spec: dict[str, Any] | str | Path,
        grid: dict[str, list[Any]],
        *,
        name: str = "sweep",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue one job per combination of the grid (dotted paths -> values) applied to the
        base spec (a dict, or a YAML/JSON file read as it is written). Like submit, it
        always sends an Idempotency-Key (a fresh one unless given): sent again with the
        same key and body, it returns the same sweep instead of queuing its jobs twice."""
        base = read_spec_file(spec) if isinstance(spec, str | Path) else spec
        body = {"name": name, "spec": base, "grid": grid}
        key = idempotency_key or uuid.uuid4().hex
        return dict(self._json("POST", "/v1/sweeps", json=body, headers={"Idempotency-Key": key}))

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep's jobs, their states and final metrics."""
        return dict(self._json("GET", f"/v1/sweeps/{sweep_id}"))

    def sweeps(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/sweeps"))

    def sweep_plot(self, sweep_id: str) -> bytes:
        """The overlay plot (PNG) of the sweep's loss curves."""
        return self._request("GET", f"/v1/sweeps/{sweep_id}/plot.png").content

    def wait_sweep(
        self,
        sweep_id: str,
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until every job of the sweep has ended; the final sweep."""
        return _poll(
            lambda: self.get_sweep(sweep_id),
            lambda sweep: bool(sweep["done"]),
            on_progress,
            poll_s,
            timeout_s,
            f"sweep {sweep_id}",
        )

    # users -------------------------------------------------------------------
    def create_user(self, name: str) -> dict[str, Any]:
        """A new user and their API key (shown once); this client's key must be the
        admin key."""
        return dict(self._json("POST", "/v1/users", json={"name": name}))

    def users(self) -> list[dict[str, Any]]:
        """Every user (id, name, created); admin key."""
        return list(self._json("GET", "/v1/users"))

    def rotate_key(self, user_id: str) -> dict[str, Any]:
        """A new API key for the user (shown once); the old one is refused from now on;
        admin key."""
        return dict(self._json("POST", f"/v1/users/{user_id}/key"))

    def delete_user(self, user_id: str) -> None:
        """Remove the user, revoke their key and cancel their live jobs; admin key."""
        self._request("DELETE", f"/v1/users/{user_id}")

    # datasets ----------------------------------------------------------------
    def upload_dataset(self, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
        """Upload an .npz (x_train, y_train, x_test, y_test); use the returned id in a spec
        as `dataset: {name: uploaded, id: ...}`."""
        file = Path(path)
        return dict(
            self._json(
                "POST",
                "/v1/datasets",
                params={"name": name or file.stem},
                content=file.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
        )

    def configs(self) -> list[dict[str, Any]]:
        """aihwkit's training configurations that `analog.config` takes (GET /v1/configs)."""
        return list(self._json("GET", "/v1/configs"))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/datasets"))

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")


def _poll(
    fetch: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    on_progress: Callable[[dict[str, Any]], None] | None,
    poll_s: float,
    timeout_s: float | None,
    what: str,
) -> dict[str, Any]:
    """Fetch until `done`, reporting each fetch; TimeoutError naming `what` past timeout_s."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        current = fetch()
        if on_progress:
            on_progress(current)
        if done(current):
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} not done after {timeout_s} s")
        time.sleep(poll_s)
