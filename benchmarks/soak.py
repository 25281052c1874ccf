"""Soak: many small jobs from many clients while workers, the API and Redis are killed
and bad actors abuse the API.

Run: python benchmarks/soak.py [--jobs 200] [--clients 10] [--seconds 300]
     [--workers 3] [--kill-every 10] [--bad-actors 1]

Starts `aimc serve --workers N` (private Redis with its append-only file) in a
temporary data dir. `--clients` threads, one user each, submit `--jobs` small jobs
between them, evenly over `--seconds` (each with an Idempotency-Key, so a submit
retried after a dropped connection cannot make two jobs), and watch them through the
job list. Meanwhile a random worker is killed (SIGKILL, with its pool and job
processes, as if its host died) every `--kill-every` seconds, the API once (at 1/3 of
the time) and Redis once (at 2/3); `aimc serve` restarts each. After the chaos the
clients wait (up to 15 min) for every job to end. Prints: jobs submitted, ended per
terminal state, lost (never ended: must be 0), jobs with duplicate or missing metric
steps (must be 0), HTTP 5xx other than the documented 503 (must be 0), and the 503s,
429s and dropped connections the clients rode out.

Beside the honest clients, `--bad-actors` of each kind in benchmarks/bad_actors.py
(oversized and malformed uploads, chunked bodies past the limit, ids with a colon, a
user flooding the queue) run for the whole chaos, each as a user of its own. Also
printed: the honest jobs' wait from queued to started (p50, p99: fair share keeps the
flooder from pushing them back), the abusers' answers by status, and the API's peak
resident memory (sampled every 0.5 s over every API process the supervisor ran).
Traffic goes to 127.0.0.1 only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from bad_actors import KINDS, run_actor  # a neighbour: run as a script, its folder is on the path

from service.serve import free_port, wait_for_port

TERMINAL = ("succeeded", "failed", "cancelled")
STEPS, EVAL = 20, 5
SPEC = {"training": {"steps": STEPS, "micro_batch_size": 8, "eval_every": EVAL}}
DRAIN_S = 900  # longest wait for the last jobs after the chaos


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid` and their command lines."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for child in kids:
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            found[int(child)] = cmd
    return found


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out = [pid]
    for child in children(pid):
        out += tree(child)
    return out


def kill_tree(pid: int) -> None:
    for p in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


class Tally:
    """Every HTTP outcome the clients saw, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[int] = Counter()
        self.dropped = 0
        self.unexpected: list[str] = []

    def count(self, status: int) -> None:
        with self.lock:
            self.status[status] += 1

    def request(
        self, http: httpx.Client, method: str, path: str, *, retry: bool = True, **kw: Any
    ) -> httpx.Response:
        """One call, retried on 503/429 (unless not `retry`) and dropped connections,
        every answer counted."""
        deadline = time.monotonic() + (120 if retry else 0)
        while True:
            try:
                r = http.request(method, path, **kw)
            except httpx.TransportError:
                with self.lock:
                    self.dropped += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            with self.lock:
                self.status[r.status_code] += 1
                if r.status_code >= 500 and r.status_code != 503:
                    self.unexpected.append(f"{method} {path} -> {r.status_code}: {r.text[:200]}")
            if r.status_code in (429, 503) and time.monotonic() < deadline:
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            return r


def client_loop(
    url: str, key: str, n_jobs: int, spread_s: float, tally: Tally, jobs: dict[str, str]
) -> None:
    """Submit n_jobs evenly over spread_s, then watch until all ended (or DRAIN_S more)."""
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    start = time.monotonic()
    mine: dict[str, str] = {}
    submitted = 0
    next_poll = 0.0
    while True:
        now = time.monotonic()
        if submitted < n_jobs and now - start >= submitted * spread_s / n_jobs:
            r = tally.request(
                http,
                "POST",
                "/v1/jobs",
                json={**SPEC, "name": f"soak-{submitted}"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            if r.status_code == 202:
                mine[r.json()["id"]] = "queued"
            submitted += 1
        if now >= next_poll:
            page = tally.request(http, "GET", "/v1/jobs", params={"limit": 100})
            if page.status_code == 200:
                for job in page.json()["jobs"]:
                    if job["id"] in mine:
                        mine[job["id"]] = job["state"]
            next_poll = now + 2
        if submitted >= n_jobs and all(s in TERMINAL for s in mine.values()):
            break
        if now - start > spread_s + DRAIN_S:
            break
        time.sleep(0.2)
    jobs.update(mine)
    http.close()


def check_metrics(url: str, keys: dict[str, str], jobs: dict[str, str], owners: dict[str, str]):
    """(jobs with a duplicate step, jobs missing a step) over the ended jobs."""
    duplicate, missing = [], []
    for job_id, state in jobs.items():
        if state not in TERMINAL:
            continue
        r = httpx.get(
            f"{url}/v1/jobs/{job_id}/metrics",
            headers={"Authorization": f"Bearer {keys[owners[job_id]]}"},
            timeout=30,
        )
        steps = [p["step"] for p in r.json()]
        if len(steps) != len(set(steps)):
            duplicate.append(job_id)
        if state == "succeeded" and steps != list(range(0, STEPS + 1, EVAL)):
            missing.append(job_id)
    return duplicate, missing


def waits(
    url: str, keys: dict[str, str], jobs: dict[str, str], owners: dict[str, str]
) -> list[float]:
    """Seconds each started job waited from queued to started, sorted."""
    out = []
    for job_id in jobs:
        r = httpx.get(
            f"{url}/v1/jobs/{job_id}",
            headers={"Authorization": f"Bearer {keys[owners[job_id]]}"},
            timeout=30,
        )
        job = r.json()
        if job.get("started") is not None:
            out.append(job["started"] - job["created"])
    return sorted(out)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class PeakMemory:
    """The largest resident size any API process (uvicorn under `aimc serve`) reached,
    sampled every 0.5 s, and each process's own high-water mark while it lived."""

    def __init__(self, serve_pid: int) -> None:
        self.serve_pid = serve_pid
        self.peak_kib = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            for pid, cmd in children(self.serve_pid).items():
                if "uvicorn" not in cmd:
                    continue
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    for line in status.splitlines():
                        if line.startswith(("VmHWM:", "VmRSS:")):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=10)
    parser.add_argument("--bad-actors", type=int, default=1, help="of each kind (0: none)")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="aimc-soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AIMC_ADMIN_KEY")}
    serve_argv = [sys.executable, "-m", "aimc_cli", "serve", "--port", str(port)]
    serve = subprocess.Popen(
        [*serve_argv, "--workers", str(args.workers), "--data-dir", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=120)
        admin = {"Authorization": f"Bearer {(data / 'admin_key').read_text().strip()}"}
        keys = {}
        for i in range(args.clients):
            r = httpx.post(f"{url}/v1/users", json={"name": f"soak-{i}"}, headers=admin)
            keys[f"soak-{i}"] = r.json()["api_key"]
        tally, abuse = Tally(), Tally()
        memory = PeakMemory(serve.pid)
        stop_abuse = threading.Event()
        actors = []
        for kind in KINDS:
            for i in range(args.bad_actors):
                r = httpx.post(f"{url}/v1/users", json={"name": f"bad-{kind}-{i}"}, headers=admin)
                actors.append(
                    threading.Thread(
                        target=run_actor,
                        args=(
                            kind,
                            url,
                            r.json()["api_key"],
                            stop_abuse,
                            abuse.request,
                            abuse.count,
                        ),
                        daemon=True,
                    )
                )
        per_client: dict[str, dict[str, str]] = {name: {} for name in keys}
        share = [
            args.jobs // args.clients + (i < args.jobs % args.clients) for i in range(len(keys))
        ]
        threads = [
            threading.Thread(
                target=client_loop,
                args=(url, key, n, args.seconds, tally, per_client[name]),
                daemon=True,  # Ctrl-C ends the soak without waiting for them
            )
            for (name, key), n in zip(keys.items(), share, strict=True)
        ]
        started = time.monotonic()
        for t in [*threads, *actors]:
            t.start()
        kills: Counter[str] = Counter()
        rng = random.Random(0)
        api_killed = redis_killed = False
        while time.monotonic() - started < args.seconds:
            time.sleep(args.kill_every)
            elapsed = time.monotonic() - started
            kids = children(serve.pid)
            workers = [p for p, cmd in kids.items() if "celery" in cmd]
            if workers:
                kill_tree(rng.choice(workers))
                kills["worker"] += 1
            if not api_killed and elapsed >= args.seconds / 3:
                api = [p for p, cmd in kids.items() if "uvicorn" in cmd]
                if api:
                    kill_tree(api[0])
                    kills["api"] += 1
                    api_killed = True
            if not redis_killed and elapsed >= 2 * args.seconds / 3:
                server = [p for p, cmd in kids.items() if "redis-server" in cmd]
                if server:
                    os.kill(server[0], signal.SIGKILL)
                    kills["redis"] += 1
                    redis_killed = True
        chaos_s = time.monotonic() - started
        stop_abuse.set()
        for t in threads:
            t.join()
        for t in actors:
            t.join(timeout=120)
        memory.stop.set()
        drained_s = time.monotonic() - started
        jobs = {j: s for d in per_client.values() for j, s in d.items()}
        owners = {j: name for name, d in per_client.items() for j in d}
        ended = Counter(s for s in jobs.values() if s in TERMINAL)
        lost = [j for j, s in jobs.items() if s not in TERMINAL]
        duplicate, missing = check_metrics(url, keys, jobs, owners)
        waited = waits(url, keys, jobs, owners)
        print(
            f"soak: {args.clients} clients, {args.workers} workers, {chaos_s:.0f} s of chaos "
            f"(killed: {kills['worker']} workers, {kills['api']} API, {kills['redis']} Redis), "
            f"all ended after {drained_s:.0f} s"
        )
        print(f"  jobs submitted: {len(jobs)}")
        print(f"  ended: {dict(sorted(ended.items()))}")
        print(f"  lost (never ended): {len(lost)}")
        print(f"  jobs with duplicate metric steps: {len(duplicate)}; with missing: {len(missing)}")
        fives = sum(c for t in (tally, abuse) for s, c in t.status.items() if s >= 500 and s != 503)
        print(f"  HTTP 5xx other than 503 (honest and abusive clients): {fives}")
        print(
            f"  honest jobs' wait, queued to started: p50 {quantile(waited, 0.5):.2f} s, "
            f"p99 {quantile(waited, 0.99):.2f} s ({len(waited)} jobs)"
        )
        print(f"  abusers' answers: {dict(sorted(abuse.status.items()))}")
        print(f"  API peak resident memory: {memory.peak_kib / 1024:.0f} MiB")
        print(
            f"  ridden out: {tally.status[503]} x 503, {tally.status[429]} x 429, "
            f"{tally.dropped} dropped connections; {sum(tally.status.values())} responses"
        )
        for line in [*tally.unexpected, *abuse.unexpected][:10]:
            print(f"  unexpected: {line}")
        failed = [j for j, s in jobs.items() if s == "failed"][:5]
        for job_id in failed:
            r = httpx.get(
                f"{url}/v1/jobs/{job_id}",
                headers={"Authorization": f"Bearer {keys[owners[job_id]]}"},
            )
            print(f"  failed {job_id}: {r.json().get('error')}")
        ok = not lost and not duplicate and not missing and fives == 0 and len(jobs) >= args.jobs
        return 0 if ok else 1
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()


if __name__ == "__main__":
    sys.exit(main())
