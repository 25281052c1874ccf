"""Jobs per minute: the README's digits jobs through a default `aimc serve`, against the
floor of running the same specs one after another with `aimc run` at one thread.

Run: python benchmarks/service_jobs.py [--rounds 1] [--workers N]
(also `python benchmarks/service_load.py --parts jobs`)

Starts `aimc serve` with its default worker count (or --workers) on a private Redis
and a fresh data folder; each round runs every examples/digits_*.yaml once through
the service (all submitted at once, timed from the first submit to the last job's
end) and once as `aimc run SPEC --quiet` processes, one after another, with
AIMC_THREADS=1 (each pays its Python and torch start, as a user running them by hand
does) at the workers' niceness (--floor-nice 0: at the default priority); service and
floor alternate, so a load change on the machine hits both alike.
Prints jobs per minute of each and their ratio (issue 24 target: >= 0.9x the floor).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from service.serve import free_port, wait_for_port
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "examples").glob("digits_*.yaml"))
ENDED = ("succeeded", "failed", "cancelled")
# the floor runs at the workers' default niceness: on a machine with other work, a
# process at niceness 10 gets a fraction of the CPU one at 0 gets, whatever its threads
WORKER_NICE = WorkerSettings.model_fields["worker_nice"].default


def start_serve(data: Path, port: int, workers: int | None) -> tuple[subprocess.Popen[str], str]:
    """`aimc serve` on `port`, its default worker count unless `workers`, ready; its
    private Redis's URL, with the password `aimc serve` generated (kept in `data`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AIMC_ADMIN_KEY")}
    env.update(AIMC_MAX_QUEUED_JOBS="100000", AIMC_REQUESTS_PER_MINUTE="100000000")
    argv = [sys.executable, "-m", "aimc_cli", "serve", "--port", str(port)]
    argv += ["--data-dir", str(data), *(["--workers", str(workers)] if workers else [])]
    serve = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert serve.stdout is not None
    line = ""
    while "Redis at " not in line:  # the children print to the same stream
        line = serve.stdout.readline()
        if not line:
            raise SystemExit("aimc serve exited before it was ready")
    print(f"  {line.strip()}")
    wait_for_port(port)
    url = line.rsplit("Redis at ", 1)[1].split()[0]
    password = (data / "redis_password").read_text().strip()
    return serve, url.replace("redis://", f"redis://:{password}@", 1)


def through_service(base: str, auth: dict[str, str], specs: list[dict]) -> float:
    """Seconds from submitting every spec at once to the last one's end."""
    began = time.perf_counter()
    ids = [httpx.post(f"{base}/v1/jobs", json=s, headers=auth).json()["id"] for s in specs]
    waiting = set(ids)
    deadline = time.monotonic() + 1800
    while waiting and time.monotonic() < deadline:
        for job_id in list(waiting):
            job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth).json()
            if job["state"] in ENDED:
                if job["state"] != "succeeded":
                    raise SystemExit(f"job {job_id} {job['state']}: {job.get('error')}")
                waiting.discard(job_id)
        time.sleep(0.1)
    if waiting:
        raise SystemExit(f"{len(waiting)} jobs did not end in 30 minutes")
    return time.perf_counter() - began


def one_after_another(out: Path, nice: int) -> float:
    """Seconds to run every spec with `aimc run` at one thread, one after another, at
    niceness `nice`."""
    env = {**os.environ, "AIMC_THREADS": "1"}
    began = time.perf_counter()
    for spec in SPECS:
        argv = ["nice", "-n", str(nice), sys.executable, "-m", "aimc_cli", "run", str(spec)]
        argv.append("--quiet")
        subprocess.run(
            [*argv, "--out", str(out / spec.stem)], env=env, check=True, capture_output=True
        )
    return time.perf_counter() - began


def jobs_per_minute(rounds: int, workers: int | None, nice: int = WORKER_NICE) -> float:
    """Run the comparison; the service's jobs per minute over the floor's."""
    data = Path(tempfile.mkdtemp(prefix="aimc-jobs-"))
    port = free_port()
    print(
        f"\njobs per minute: {len(SPECS)} README digits jobs ({', '.join(s.stem for s in SPECS)})"
    )
    print(f"  load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    serve, _ = start_serve(data, port, workers)
    try:
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {(data / 'admin_key').read_text().strip()}"}
        key = httpx.post(f"{base}/v1/users", json={"name": "jobs"}, headers=admin).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        specs = [yaml.safe_load(s.read_text()) for s in SPECS]
        service, floor = 0.0, 0.0
        for r in range(rounds):
            s = through_service(base, auth, specs)
            f = one_after_another(data / f"runs-{r}", nice)
            print(f"  round {r + 1}: service {s:.1f} s, aimc run one after another {f:.1f} s")
            service, floor = service + s, floor + f
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    n = rounds * len(SPECS)
    ours, base_rate = 60 * n / service, 60 * n / floor
    label = f"--workers {workers}" if workers else "default workers"
    print(f"  aimc serve ({label}): {ours:.1f} jobs/min")
    print(f"  aimc run one after another, 1 thread, niceness {nice}: {base_rate:.1f} jobs/min")
    print(f"  service over the floor: {ours / base_rate:.2f}x (issue 24 target >= 0.9x)")
    return ours / base_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="service and floor, alternating")
    parser.add_argument("--workers", type=int, help="aimc serve --workers (default: its default)")
    parser.add_argument(
        "--floor-nice",
        type=int,
        default=WORKER_NICE,
        help="niceness of the `aimc run` floor (default: the workers', AIMC_WORKER_NICE)",
    )
    args = parser.parse_args()
    jobs_per_minute(args.rounds, args.workers, args.floor_nice)


if __name__ == "__main__":
    main()
