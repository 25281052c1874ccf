"""Redis memory of one finished resnet job: every artifact in Redis vs the artifact store.

Run: python benchmarks/artifact_memory.py [--steps 250] [--channels 16,32]

Starts a private redis-server (its own port and temporary dir), runs one resnet job on
digits through the worker's own code path (worker.bridge.run_and_store: engine, metrics,
checkpoints, artifacts) twice: once with no artifact store (every artifact in Redis,
as before the store existed) and once with the store in a temporary directory and the
default 256 KiB inline threshold. Prints the Redis memory (MEMORY USAGE summed over the
job's keys), the bytes in the store, the peak checkpoint held in Redis during the run
(deleted when the job ends) and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from aimc_spec.spec import parse_spec
from aimc_store.settings import INLINE_MAX_BYTES
from aimc_store.store import JobStore
from service.serve import free_port, redis_binary, wait_for_port


def job_memory(store: JobStore, job_id: str) -> dict[str, int]:
    """MEMORY USAGE (bytes) of each Redis key of the job."""
    keys = store.r.scan_iter(match=f"{store.p}job:{job_id}*", count=1000)
    return {k.decode(): int(store.r.memory_usage(k, samples=0) or 0) for k in keys}


def run_one(url: str, spec: dict, artifact_dir: Path | None) -> tuple[dict[str, int], int, float]:
    """(memory per key, peak checkpoint bytes, seconds) of one job run to its end."""
    from worker.bridge import run_and_store

    store = JobStore.from_url(url, "bench:", artifact_dir=artifact_dir)
    job_id = store.jobs.create("bench", spec)
    peak = [0]
    put = store.jobs.put_checkpoint

    def measured(job: str, blob: bytes) -> None:
        put(job, blob)
        peak[0] = max(peak[0], int(store.r.memory_usage(store.key("job", job, "checkpoint"))))

    store.jobs.put_checkpoint = measured  # type: ignore[method-assign]
    started = time.perf_counter()
    run_and_store(store, job_id, spec, "bench")
    seconds = time.perf_counter() - started
    final = store.jobs.get(job_id)
    assert final is not None and final.state == "succeeded", final
    return job_memory(store, job_id), peak[0], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="updates (>200: one checkpoint)")
    parser.add_argument("--channels", default="16,32", help="resnet stage channels")
    args = parser.parse_args()
    spec = parse_spec(
        {
            "name": "resnet-memory",
            "device": "cpu",
            "model": {"kind": "resnet", "channels": [int(c) for c in args.channels.split(",")]},
            "training": {"steps": args.steps, "micro_batch_size": 8, "eval_every": 50},
        }
    ).normalised()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--dir", tmp, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            url = f"redis://127.0.0.1:{port}/0"
            before, peak, t0 = run_one(url, spec, None)
            store_dir = Path(tmp) / "artifacts"
            after, _, t1 = run_one(url, spec, store_dir)
            on_disk = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
        finally:
            server.terminate()
            server.wait()
    b, a = sum(before.values()), sum(after.values())
    old = b + peak  # the service used to keep the last checkpoint after the job ended
    print(f"resnet channels {args.channels}, {args.steps} steps on digits ({t0:.0f} s, {t1:.0f} s)")
    print(
        f"  checkpoint held in Redis during the run: {peak / 1e6:.3f} MB (now deleted at the end)"
    )
    print(f"  before (every artifact and the last checkpoint kept in Redis): {old / 1e6:.3f} MB")
    print(f"  every artifact in Redis, checkpoint deleted: {b / 1e6:.3f} MB, of which")
    for key, size in sorted(before.items(), key=lambda kv: -kv[1])[:4]:
        print(f"    {key.split(':', 2)[-1].split(':', 1)[-1]:<30} {size / 1e6:.3f} MB")
    print(
        f"  after (artifacts > {INLINE_MAX_BYTES // 1024} KiB in the artifact store): "
        f"{a / 1e6:.3f} MB in Redis, {on_disk / 1e6:.3f} MB of files in the store"
    )
    print(f"  Redis memory per job, before/after: {old / max(a, 1):.1f}x")


if __name__ == "__main__":
    main()
