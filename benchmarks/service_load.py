"""Service load on loopback: `aimc serve` against the floor of a bare FastAPI + Redis route.

Run: python benchmarks/service_load.py [--seconds 5] [--jobs 10] [--burst 100]
     [--parts http,queue,sse,jobs] [--clients 1,10,50] [--rounds 3]

Starts `aimc serve --workers 2` (private Redis) and, in the same session, a bare
FastAPI app whose one route reads one Redis hash from that Redis (the floor any
status route stands on). One asyncio/httpx load generator drives both: status
(GET /v1/jobs/{id}) and submit (POST /v1/jobs) at 1, 10 and 50 concurrent
clients for a bounded time (floor and status alternate in `--rounds` slices, so a
load change on the machine hits both alike); queue overhead of tiny jobs (submit ->
running, engine finished -> succeeded) run one after another, and of a burst of 100
sharing the 2 workers; 50 SSE listeners on one job. Prints p50/p99 latency,
throughput, errors, ratios to the floor, and last the two figures issue 12 sets
targets for: status throughput at 1 client over the floor's, and the median time from
a job's engine end to `succeeded`. `--parts jobs` then times the README's digits jobs
through a default `aimc serve` against `aimc run` at one thread (service_jobs.py).
Traffic goes to 127.0.0.1 only and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from service_jobs import jobs_per_minute, start_serve

from service.serve import free_port, wait_for_port

FLOOR_APP = """
import os, redis
from fastapi import FastAPI
app = FastAPI()
r = redis.Redis.from_url(os.environ["REDIS_URL"])
r.hset("floor:hash", mapping={"state": "running", "progress": 0.5})
@app.get("/status")
def status():
    return {k.decode(): v.decode() for k, v in r.hgetall("floor:hash").items()}
"""


async def load(
    url: str, clients: int, seconds: float, method: str = "GET", **kw: object
) -> dict[str, Any]:
    """`clients` concurrent loops hitting `url` for `seconds`: latencies, time, errors."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    r = await client.request(method, url, **kw)  # type: ignore[arg-type]
                    if r.status_code >= 400:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors}


def summarise(slices: list[dict[str, Any]]) -> dict[str, float]:
    """Throughput, p50/p99 latency and errors over the slices of one load."""
    latencies = sorted(x for s in slices for x in s["latencies"])
    return {
        "rps": len(latencies) / sum(s["elapsed"] for s in slices),
        "p50_ms": 1e3 * statistics.median(latencies),
        "p99_ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": sum(s["errors"] for s in slices),
        "n": len(latencies),
    }


async def sse_listeners(base: str, job_id: str, auth: dict[str, str], n: int) -> dict[str, float]:
    """n listeners on one job's events; seconds until each saw the job end, errors."""

    async def listen(client: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        async with client.stream("GET", f"{base}/v1/jobs/{job_id}/events", headers=auth) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:") and '"succeeded"' in line:
                    return time.perf_counter() - start
        return float("nan")

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        results = await asyncio.gather(*(listen(client) for _ in range(n)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, float) and r == r]
    return {
        "listeners": n,
        "completed": len(ok),
        "errors": n - len(ok),
        "max_s": max(ok) if ok else float("nan"),
    }


def drain(base: str, auth: dict[str, str]) -> None:
    """Cancel the jobs a submit load left queued (parked ones too), so the next
    measurement starts idle: deleting the Celery queue is not enough, the API's reaper
    sends a queued job whose task it cannot find again a minute later. Then give the
    workers time to finish the jobs they hold."""
    queued: list[str] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = httpx.get(
            f"{base}/v1/jobs",
            params={"state": "queued", "limit": 100, "cursor": cursor},
            headers=auth,
            timeout=60,
        ).json()
        queued += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
    with httpx.Client(timeout=30) as client:
        for job_id in queued:
            client.post(f"{base}/v1/jobs/{job_id}/cancel", headers=auth)
    time.sleep(5)


def wait_state(
    base: str, job_id: str, auth: dict[str, str], states: tuple[str, ...], timeout: float = 120
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] in states:
            return dict(job)
        time.sleep(0.02)
    raise SystemExit(f"job {job_id} did not reach {states}")


def queue_overhead(base: str, auth: dict[str, str], tiny: dict, jobs: int, burst: int) -> float:
    """Idle latency of tiny jobs run one after another, then a burst sharing 2 workers;
    the median seconds from engine end to `succeeded` of the ones run one by one."""
    print("\nqueue overhead, tiny jobs one after another (workers otherwise idle):")
    to_running, to_done = [], []
    for _ in range(jobs):
        j = httpx.post(f"{base}/v1/jobs", json=tiny, headers=auth).json()
        done = wait_state(base, j["id"], auth, ("succeeded", "failed"))
        to_running.append(done["started"] - done["created"])
        to_done.append(done["finished"] - done["engine_finished"])
    print(
        f"  submit -> running: median {1e3 * statistics.median(to_running):.0f} ms, "
        f"max {1e3 * max(to_running):.0f} ms over {jobs} jobs"
    )
    print(
        f"  engine end -> succeeded: median {1e3 * statistics.median(to_done):.0f} ms, "
        f"max {1e3 * max(to_done):.0f} ms (plots, weights, artifacts into Redis)"
    )
    if burst == 0:
        return statistics.median(to_done)
    began = time.time()
    ids = [
        httpx.post(f"{base}/v1/jobs", json=tiny, headers=auth).json()["id"] for _ in range(burst)
    ]
    finished = [wait_state(base, i, auth, ("succeeded", "failed"), timeout=600) for i in ids]
    makespan = max(j["finished"] for j in finished) - began
    engine = sum(j["engine_finished"] - j["started"] for j in finished)
    failed = sum(j["state"] != "succeeded" for j in finished)
    idle = (2 * makespan - engine) / burst  # worker-seconds not spent in the engine, per job
    print(
        f"  burst of {burst} jobs on 2 workers: makespan {makespan:.1f} s, engine time "
        f"{engine / burst * 1e3:.0f} ms per job, overhead {idle * 1e3:.0f} ms per job "
        f"(2 x makespan - engine time, over jobs), {failed} failed"
    )
    return statistics.median(to_done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load level")
    parser.add_argument("--jobs", type=int, default=10, help="tiny jobs run one after another")
    parser.add_argument("--burst", type=int, default=100, help="tiny jobs submitted at once")
    parser.add_argument(
        "--parts",
        default="http,queue,sse,jobs",
        help="comma-separated subset of http,queue,sse,jobs",
    )
    parser.add_argument("--clients", default="1,10,50", help="comma-separated load levels")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating floor/status slices per level"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts & {"http", "queue", "sse"}:
        service_load(args, parts)
    if "jobs" in parts:
        jobs_per_minute(rounds=1, workers=None)


def service_load(args: argparse.Namespace, parts: set[str]) -> None:
    """The HTTP, queue and SSE parts, on `aimc serve --workers 2`."""
    data = Path(tempfile.mkdtemp(prefix="aimc-load-"))
    port, floor_port = free_port(), free_port()
    serve, redis_url = start_serve(data, port, workers=2)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AIMC_ADMIN_KEY")}
    floor = None
    try:
        admin = (data / "admin_key").read_text().strip()
        floor_file = data / "floor_app.py"
        floor_file.write_text(FLOOR_APP)
        floor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "floor_app:app",
                "--port",
                str(floor_port),
                "--log-level",
                "warning",
            ],
            cwd=data,
            env={**env, "REDIS_URL": redis_url},
        )
        wait_for_port(floor_port)
        base = f"http://127.0.0.1:{port}"
        key = httpx.post(
            f"{base}/v1/users", json={"name": "load"}, headers={"Authorization": f"Bearer {admin}"}
        ).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        tiny = {"training": {"steps": 2, "eval_every": 2}, "model": {"hidden": [8]}}
        job = httpx.post(f"{base}/v1/jobs", json=tiny, headers=auth).json()
        wait_state(base, job["id"], auth, ("succeeded",))

        print(
            f"{'load':28} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'errors':>6} {'vs floor':>22}"
        )
        ratio_1: float | None = None
        levels = [int(c) for c in args.clients.split(",")] if "http" in parts else []
        for clients in levels:
            floor_slices, status_slices = [], []
            for _ in range(args.rounds):
                floor_slices.append(
                    asyncio.run(
                        load(
                            f"http://127.0.0.1:{floor_port}/status",
                            clients,
                            args.seconds / args.rounds,
                        )
                    )
                )
                status_slices.append(
                    asyncio.run(
                        load(
                            f"{base}/v1/jobs/{job['id']}",
                            clients,
                            args.seconds / args.rounds,
                            headers=auth,
                        )
                    )
                )
            f, s = summarise(floor_slices), summarise(status_slices)
            p = summarise(
                [
                    asyncio.run(
                        load(
                            f"{base}/v1/jobs",
                            clients,
                            args.seconds / 2,
                            "POST",
                            headers=auth,
                            json={**tiny, "training": {"steps": 1}},
                        )
                    )
                ]
            )
            drain(base, auth)  # the jobs the submit load queued would load the next level
            if clients == 1:
                ratio_1 = s["rps"] / f["rps"]
            for name, m in (
                ("floor (bare FastAPI+Redis)", f),
                ("status GET /v1/jobs/{id}", s),
                ("submit POST /v1/jobs", p),
            ):
                ratio = (
                    ""
                    if m is f
                    else (f"rps {m['rps'] / f['rps']:.2f}x, p99 {m['p99_ms'] / f['p99_ms']:.2f}x")
                )
                print(
                    f"{name:28} {clients:7d} {m['rps']:8.0f} {m['p50_ms']:8.1f} "
                    f"{m['p99_ms']:8.1f} {m['errors']:6d} {ratio:>22}"
                )
        finish: float | None = None
        if "queue" in parts:
            finish = queue_overhead(base, auth, tiny, args.jobs, args.burst)
        if "sse" in parts:
            slow = httpx.post(
                f"{base}/v1/jobs", json={"training": {"steps": 400, "eval_every": 50}}, headers=auth
            ).json()
            sse = asyncio.run(sse_listeners(base, slow["id"], auth, 50))
            print(
                f"\nSSE: {sse['completed']}/{sse['listeners']} listeners saw the job end, "
                f"{sse['errors']} errors, slowest {sse['max_s']:.1f} s"
            )
        print("\nissue 12 targets:")
        if ratio_1 is not None:
            print(f"  status throughput at 1 client: {ratio_1:.2f}x the floor's (target >= 0.8x)")
        if finish is not None:
            print(f"  engine end -> succeeded: median {1e3 * finish:.0f} ms (target < 200 ms)")
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        if floor is not None:
            floor.terminate()
            floor.wait(timeout=10)


if __name__ == "__main__":
    main()
